package dev.tidemark.bench;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartition;

/**
 * The input's extent when the run starts, as tidemark's {@code --bounded} takes it: a job has
 * drained its input when every partition's position reached the end offset taken here.
 */
public final class Bounded {
    /** Offsets of the first record and one past the last, per partition. */
    public final Map<TopicPartition, long[]> extent = new HashMap<>();
    /** Partitions per input topic. */
    public final Map<String, Integer> partitions = new HashMap<>();

    public Bounded(String bootstrap, List<String> topics) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            Map<String, TopicDescription> d = admin.describeTopics(topics).allTopicNames().get();
            Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicDescription t : d.values()) {
                partitions.put(t.name(), t.partitions().size());
                for (var info : t.partitions()) {
                    TopicPartition tp = new TopicPartition(t.name(), info.partition());
                    earliest.put(tp, OffsetSpec.earliest());
                    latest.put(tp, OffsetSpec.latest());
                }
            }
            var from = admin.listOffsets(earliest).all().get();
            var to = admin.listOffsets(latest).all().get();
            for (TopicPartition tp : earliest.keySet()) {
                extent.put(tp, new long[] {from.get(tp).offset(), to.get(tp).offset()});
            }
        }
    }

    public long records() {
        long n = 0;
        for (long[] e : extent.values()) {
            n += e[1] - e[0];
        }
        return n;
    }
}
