package dev.tidemark.bench;

import java.util.Properties;

/**
 * The Kafka client settings every system in the comparison uses: tidemark's own (src/kafka.rs,
 * {@code producer} and {@code consumer}), translated to the Java client's names where they
 * differ. docs/BENCHMARKS.md keeps them in one table; a change here belongs there too.
 *
 * <p>Where the Java client has no equivalent (librdkafka's {@code queued.max.messages.kbytes},
 * the prefetch queue) the Java default stays, and the table says so.
 */
public final class ClientSettings {
    private ClientSettings() {}

    /** Producer settings: idempotent, acks=all, 1 MB batches, 5 ms linger, lz4. */
    public static Properties producer() {
        Properties p = new Properties();
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        // tidemark's linger. Kafka Streams' own default is 100 ms and the Java client's 5 ms
        // (since 4.0); all three systems wait the same.
        p.put("linger.ms", "5");
        // librdkafka's default and tidemark's batch.size; the Java client's default is 16 KB.
        p.put("batch.size", "1000000");
        p.put("compression.type", "lz4");
        // librdkafka's message.timeout.ms, the bound on a send's retries.
        p.put("delivery.timeout.ms", "120000");
        return p;
    }

    /** Consumer settings: read_committed, fetches answered within 50 ms. */
    public static Properties consumer() {
        Properties p = new Properties();
        p.put("isolation.level", "read_committed");
        // librdkafka's fetch.wait.max.ms as tidemark sets it; the Java default is 500 ms.
        p.put("fetch.max.wait.ms", "50");
        return p;
    }

    /** {@code settings} with every key prefixed (Kafka Streams' {@code producer.} and {@code consumer.}). */
    public static Properties prefixed(String prefix, Properties settings) {
        Properties p = new Properties();
        for (String k : settings.stringPropertyNames()) {
            p.put(prefix + k, settings.getProperty(k));
        }
        return p;
    }
}
