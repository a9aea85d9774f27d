package dev.tidemark.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * S0 with the Java client: every record of a topic consumed and its bytes produced, unparsed, to
 * another topic (same key, partition {@code p % partitions}), on two threads with a consumer and
 * a producer each and the shared {@link ClientSettings}. It is {@code tidemark bench-floor}
 * (src/tools/bench/floor.rs) written against the Java client, so the two floors differ only in
 * the client: what the JVM systems could reach at best on these brokers.
 *
 * <p>Timed like the rdkafka floor: from the first record read by any thread to the last
 * acknowledgement of any thread.
 */
public final class JavaFloor {
    public static void main(String[] argv) throws Exception {
        Args args = new Args(argv);
        String bootstrap = args.get("bootstrap", "127.0.0.1:19092");
        String from = args.get("from", "log-events");
        String to = args.get("to");
        int threads = args.getInt("threads", 2);
        Bounded extent = new Bounded(bootstrap, List.of(from));
        int partitions = extent.partitions.get(from);
        Properties admin = new Properties();
        admin.put("bootstrap.servers", bootstrap);
        try (Admin a = Admin.create(admin)) {
            a.createTopics(List.of(new NewTopic(to, partitions, (short) 1))).all().get();
        } catch (java.util.concurrent.ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw e;
            }
        }

        AtomicLong firstNs = new AtomicLong(Long.MAX_VALUE);
        AtomicLong lastNs = new AtomicLong(Long.MIN_VALUE);
        AtomicLong copied = new AtomicLong();
        AtomicReference<Exception> failed = new AtomicReference<>();
        List<Thread> workers = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            final int index = i;
            Thread t = new Thread(() -> {
                try {
                    copy(bootstrap, from, to, partitions, extent, index, threads, firstNs, lastNs, copied);
                } catch (Exception e) {
                    failed.compareAndSet(null, e);
                }
            }, "copier-" + i);
            t.start();
            workers.add(t);
        }
        for (Thread t : workers) {
            t.join();
        }
        if (failed.get() != null) {
            throw failed.get();
        }
        long n = copied.get();
        if (n != extent.records()) {
            throw new IllegalStateException(n + " of " + extent.records() + " records copied");
        }
        double secs = (lastNs.get() - firstNs.get()) / 1e9;
        System.out.printf("java floor: read %d records in %.2f s (%.0f records/s)%n", n, secs, n / secs);
    }

    private static void copy(String bootstrap, String from, String to, int partitions, Bounded extent, int index,
            int threads, AtomicLong firstNs, AtomicLong lastNs, AtomicLong copied) throws Exception {
        Properties c = ClientSettings.consumer();
        c.put("bootstrap.servers", bootstrap);
        c.put("enable.auto.commit", "false");
        Properties p = ClientSettings.producer();
        p.put("bootstrap.servers", bootstrap);
        List<TopicPartition> mine = new ArrayList<>();
        Map<TopicPartition, Long> end = new java.util.HashMap<>();
        for (var e : extent.extent.entrySet()) {
            if (e.getKey().partition() % threads == index && e.getValue()[1] > e.getValue()[0]) {
                mine.add(e.getKey());
                end.put(e.getKey(), e.getValue()[1]);
            }
        }
        if (mine.isEmpty()) {
            return;
        }
        AtomicLong acked = new AtomicLong();
        AtomicReference<Exception> failed = new AtomicReference<>();
        long sent = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c, new ByteArrayDeserializer(),
                new ByteArrayDeserializer());
                KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p, new ByteArraySerializer(),
                        new ByteArraySerializer())) {
            consumer.assign(mine);
            for (TopicPartition tp : mine) {
                consumer.seek(tp, extent.extent.get(tp)[0]);
            }
            long deadline = System.nanoTime() + Duration.ofMinutes(30).toNanos();
            while (!end.isEmpty() && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                    firstNs.accumulateAndGet(System.nanoTime(), Math::min);
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    Long last = end.get(tp);
                    if (last == null || r.offset() >= last) {
                        continue;
                    }
                    sent++;
                    producer.send(new ProducerRecord<>(to, r.partition() % partitions, r.key(), r.value()), (m, e) -> {
                        if (e != null) {
                            failed.compareAndSet(null, e);
                        } else {
                            acked.incrementAndGet();
                        }
                    });
                    if (r.offset() + 1 >= last) {
                        end.remove(tp);
                    }
                }
            }
            producer.flush();
        }
        lastNs.accumulateAndGet(System.nanoTime(), Math::max);
        if (failed.get() != null) {
            throw failed.get();
        }
        if (acked.get() != sent) {
            throw new IllegalStateException(acked.get() + " of " + sent + " copies acknowledged");
        }
        copied.addAndGet(sent);
    }
}
