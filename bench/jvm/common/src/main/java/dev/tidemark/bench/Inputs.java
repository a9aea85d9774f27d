package dev.tidemark.bench;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What a job reads, named as a tidemark pipeline names it:
 * {@code --clusters region-a=127.0.0.1:19092,region-b=127.0.0.1:29092} (the first one also
 * takes the output) and {@code --inputs region-a/log-events=region-a,region-b/log-events=region-b}
 * (cluster/topic=origin region). The cluster name goes into {@code tidemark-source}, the origin
 * region into {@code tidemark-region}.
 */
public final class Inputs {
    /** One input topic. */
    public static final class Input implements java.io.Serializable {
        public final String cluster;
        public final String bootstrap;
        public final String topic;
        public final String region;

        Input(String cluster, String bootstrap, String topic, String region) {
            this.cluster = cluster;
            this.bootstrap = bootstrap;
            this.topic = topic;
            this.region = region;
        }
    }

    public final Map<String, String> clusters = new LinkedHashMap<>();
    public final List<Input> inputs = new ArrayList<>();

    public Inputs(Args args) {
        for (String pair : args.get("clusters", "region-a=127.0.0.1:19092").split(",")) {
            String[] kv = pair.split("=", 2);
            clusters.put(kv[0], kv[1]);
        }
        for (String spec : args.get("inputs", "region-a/log-events=region-a").split(",")) {
            String[] kv = spec.split("=", 2);
            String[] ct = kv[0].split("/", 2);
            String bootstrap = clusters.get(ct[0]);
            if (bootstrap == null || ct.length != 2 || kv.length != 2) {
                throw new IllegalArgumentException("--inputs " + spec + ": expected a declared cluster/topic=region");
            }
            inputs.add(new Input(ct[0], bootstrap, ct[1], kv[1]));
        }
    }

    /** The cluster the outputs go to. */
    public String outputBootstrap() {
        return clusters.values().iterator().next();
    }

    /** Each input as the {@code tidemark-source} header begins: "cluster/topic", by index. */
    public String[] names() {
        String[] n = new String[inputs.size()];
        for (int i = 0; i < n.length; i++) {
            n[i] = inputs.get(i).cluster + "/" + inputs.get(i).topic;
        }
        return n;
    }

    /** The index of the input that reads {@code topic} on {@code cluster}, or -1. */
    public int indexOf(String cluster, String topic) {
        for (int i = 0; i < inputs.size(); i++) {
            if (inputs.get(i).cluster.equals(cluster) && inputs.get(i).topic.equals(topic)) {
                return i;
            }
        }
        return -1;
    }

    /** Inputs of one cluster. */
    public List<Input> of(String cluster) {
        List<Input> l = new ArrayList<>();
        for (Input i : inputs) {
            if (i.cluster.equals(cluster)) {
                l.add(i);
            }
        }
        return l;
    }

    /** Topics of one cluster's inputs. */
    public List<String> topics(String cluster) {
        List<String> l = new ArrayList<>();
        for (Input i : of(cluster)) {
            l.add(i.topic);
        }
        return l;
    }

    /** Records between each input's end offsets and its start, at this moment. */
    public long records() throws Exception {
        long n = 0;
        for (var c : clusters.entrySet()) {
            if (!of(c.getKey()).isEmpty()) {
                n += new Bounded(c.getValue(), topics(c.getKey())).records();
            }
        }
        return n;
    }
}
