package dev.tidemark.bench;

import java.util.HashMap;
import java.util.Map;

/** {@code --name value} arguments, each one required unless it has a default. */
public final class Args {
    private final Map<String, String> values = new HashMap<>();

    public Args(String[] argv) {
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value, got " + argv[i]);
            }
            values.put(argv[i].substring(2), argv[++i]);
        }
    }

    public String get(String name) {
        String v = values.get(name);
        if (v == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    public String get(String name, String otherwise) {
        return values.getOrDefault(name, otherwise);
    }

    public int getInt(String name, int otherwise) {
        return Integer.parseInt(get(name, Integer.toString(otherwise)));
    }

    public long millis(String name, String otherwise) {
        String v = get(name, otherwise);
        long unit = v.endsWith("ms") ? 1 : v.endsWith("s") ? 1000 : v.endsWith("m") ? 60_000 : 0;
        if (unit == 0) {
            throw new IllegalArgumentException("--" + name + ": " + v + " is not like 2s, 10m or 500ms");
        }
        return Long.parseLong(v.substring(0, v.length() - (unit == 1 ? 2 : 1))) * unit;
    }
}
