package dev.tidemark.bench;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.StreamPartitioner;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * tidemark's job in Kafka Streams, written with the Processor API as a Streams user would:
 * dedup by a key-value lookup of the id, event-time order through a key-value buffer sorted by
 * (time, id) and emitted as the task's watermark passes, late events to a side topic, invalid
 * records to another.
 *
 * <p>Two comparisons, as {@code bench/run-all} runs them ({@code --stores}):
 * <ul>
 *   <li>{@code memory}: in-memory stores with logging off and a 30 s commit interval, at least
 *   once, against tidemark's at_least_once;</li>
 *   <li>{@code durable}: RocksDB stores with changelogs and caching, {@code exactly_once_v2}, and
 *   {@code commit.interval.ms} equal to tidemark's commit_interval (1 s), against tidemark's
 *   exactly_once.</li>
 * </ul>
 *
 * <p>Tuned as the Kafka Streams documentation advises:
 * <ul>
 *   <li>dedup is a {@code get} of the id ("Developer Guide: Processor API", key-value stores),
 *   not a window fetch over the horizon; ids older than the horizon are purged on a stream-time
 *   punctuation, which runs once per horizon of event time;</li>
 *   <li>the buffer is read with {@code range()} from the last key emitted, so the deleted keys
 *   before it (RocksDB tombstones) are never walked again;</li>
 *   <li>persistent stores have the record cache on ("Memory management": it absorbs writes that
 *   are overwritten or deleted before a commit);</li>
 *   <li>the source position as numbers, its text built only for the header;</li>
 *   <li>the producer and consumer settings shared with the other systems ({@link ClientSettings}),
 *   so linger.ms is tidemark's 5 ms rather than Streams' 100 ms.</li>
 * </ul>
 *
 * <p>Where Streams cannot match tidemark:
 * <ul>
 *   <li>a task's watermark is its own stream time (max event time of its partitions) minus the
 *   bound, not the minimum over all partitions: Streams has no frontier across tasks;</li>
 *   <li>there is no repartition by id: every copy of an event must already be in the same input
 *   partition (loadgen keys records by id, and MM2 keeps partitions), and an ordered partition
 *   is owned by the task of the input partition with the same number;</li>
 *   <li>one application reads one cluster, so a second region is read through its MM2 copy.</li>
 * </ul>
 *
 * <p>The run is bounded like tidemark's {@code --bounded}: the end offsets are taken at start,
 * each task flushes its buffer when its partitions reach them, and the application closes
 * (flushing the producer and committing) once every task has.
 */
public final class KStreamsJob {
    private static final AtomicLong FIRST_RECORD_NS = new AtomicLong();
    private static final AtomicLong READ = new AtomicLong();
    private static final AtomicLong ORDERED = new AtomicLong();
    private static final AtomicLong LATE = new AtomicLong();
    private static final AtomicLong INVALID = new AtomicLong();
    private static final AtomicLong DUPLICATES = new AtomicLong();
    private static final Set<TopicPartition> DRAINED = ConcurrentHashMap.newKeySet();

    public static void main(String[] argv) throws Exception {
        Args args = new Args(argv);
        Inputs in = new Inputs(args);
        String name = args.get("name");
        String out = args.get("out");
        // One application reads one cluster: the outputs' (a second region is read through its
        // MM2 copy there).
        String cluster = in.clusters.keySet().iterator().next();
        String bootstrap = in.outputBootstrap();
        if (in.of(cluster).size() != in.inputs.size()) {
            throw new IllegalArgumentException("Kafka Streams reads one cluster: every input must be on " + cluster);
        }
        // The origin region of each input topic.
        Map<String, String> regions = new java.util.LinkedHashMap<>();
        for (Inputs.Input i : in.inputs) {
            regions.put(i.topic, i.region);
        }
        long ooo = args.millis("max-out-of-orderness", "2s");
        long idle = args.millis("idle-timeout", "5s");
        long horizon = args.millis("horizon", "10m");
        int threads = args.getInt("threads", 2);
        String stateDir = args.get("state-dir");
        String stores = args.get("stores", "durable");
        boolean durable;
        switch (stores) {
            case "durable" -> durable = true;
            case "memory" -> durable = false;
            default -> throw new IllegalArgumentException("--stores must be memory or durable, got " + stores);
        }
        long commitMs = args.millis("commit-interval", durable ? "1s" : "30s");
        String[] inputNames = in.names();

        List<String> topics = new ArrayList<>(regions.keySet());
        Bounded bounded = new Bounded(bootstrap, topics);
        int partitions = bounded.partitions.get(topics.get(0));
        for (var e : bounded.partitions.entrySet()) {
            if (e.getValue() != partitions) {
                throw new IllegalArgumentException("input topics must be co-partitioned: " + bounded.partitions);
            }
        }

        Topology t = new Topology();
        t.addSource("input", Serdes.ByteArray().deserializer(), Serdes.ByteArray().deserializer(),
                topics.toArray(new String[0]));
        t.addProcessor("job", () -> new Job(inputNames, in, bounded, ooo, idle, horizon), "input");
        var seen = Stores.keyValueStoreBuilder(
                durable ? Stores.persistentKeyValueStore("dedup") : Stores.inMemoryKeyValueStore("dedup"),
                Serdes.String(), Serdes.Long());
        var buffer = Stores.keyValueStoreBuilder(
                durable ? Stores.persistentKeyValueStore("buffer") : Stores.inMemoryKeyValueStore("buffer"),
                Serdes.Bytes(), Serdes.ByteArray());
        if (durable) {
            seen = seen.withCachingEnabled();
            buffer = buffer.withCachingEnabled();
        } else {
            seen = seen.withLoggingDisabled();
            buffer = buffer.withLoggingDisabled();
        }
        t.addStateStore(seen, "job");
        t.addStateStore(buffer, "job");
        // One sink per ordered partition: a task writes only to the partition it owns.
        for (int p = 0; p < partitions; p++) {
            final int fixed = p;
            StreamPartitioner<byte[], byte[]> to = (topic, k, v, n) -> java.util.Optional.of(Set.of(fixed));
            t.addSink("ordered-" + p, out + "-ordered", Serdes.ByteArray().serializer(),
                    Serdes.ByteArray().serializer(), to, "job");
        }
        t.addSink("late", out + "-late", Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "job");
        t.addSink("invalid", out + "-invalid", Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "job");

        Properties p = new Properties();
        p.putAll(ClientSettings.prefixed(StreamsConfig.PRODUCER_PREFIX, ClientSettings.producer()));
        p.putAll(ClientSettings.prefixed(StreamsConfig.CONSUMER_PREFIX, ClientSettings.consumer()));
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, name);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                durable ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        // The local regions run with one broker each.
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        long records = bounded.records();
        System.err.printf("kafka streams: %d records in %s, %d threads, %s stores, commit every %d ms%n", records,
                topics, threads, stores, commitMs);
        KafkaStreams streams = new KafkaStreams(t, p);
        streams.setUncaughtExceptionHandler(ex -> {
            ex.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                    .StreamThreadExceptionResponse.SHUTDOWN_APPLICATION;
        });
        long started = System.nanoTime();
        streams.start();
        int total = bounded.extent.size();
        // Bounded: every wait is a poll of at most 1 s, and a stalled job ends the run.
        long deadline = System.nanoTime() + Duration.ofMillis(args.millis("timeout", "600s")).toNanos();
        while (DRAINED.size() < total) {
            if (System.nanoTime() > deadline || streams.state() == KafkaStreams.State.ERROR
                    || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                System.err.printf("kafka streams: stopped with %d of %d partitions drained (%s)%n",
                        DRAINED.size(), total, streams.state());
                streams.close(Duration.ofSeconds(30));
                System.exit(1);
            }
            Thread.sleep(20);
        }
        // close() flushes the producers and commits: the output is durable when it returns.
        streams.close(Duration.ofSeconds(60));
        long end = System.nanoTime();
        long first = FIRST_RECORD_NS.get() == 0 ? started : FIRST_RECORD_NS.get();
        double secs = (end - first) / 1e9;
        System.out.printf("kafka streams: ordered %d late %d invalid %d duplicates %d%n",
                ORDERED.get(), LATE.get(), INVALID.get(), DUPLICATES.get());
        System.out.printf("read %d records in %.2f s (%.0f records/s), %.2f s from start%n",
                READ.get(), secs, READ.get() / secs, (end - started) / 1e9);
    }

    /** Parse, dedup, late routing and event-time order for one task. */
    static final class Job implements Processor<byte[], byte[], byte[], byte[]> {
        private final String[] inputNames;
        private final Inputs inputs;
        /** Per input topic: its input's index. */
        private final Map<String, Integer> index = new java.util.HashMap<>();
        private final Bounded bounded;
        private final long ooo;
        private final long idle;
        private final long horizon;
        private ProcessorContext<byte[], byte[]> ctx;
        private KeyValueStore<String, Long> seen;
        private KeyValueStore<Bytes, byte[]> buffer;
        private final List<TopicPartition> mine = new ArrayList<>();
        private final Map<TopicPartition, Long> position = new java.util.HashMap<>();
        private String orderedSink;
        private long maxTime = Long.MIN_VALUE;
        private long emittedUpTo = Long.MIN_VALUE;
        private long lastRecordMs = System.currentTimeMillis();
        private boolean drained;

        Job(String[] inputNames, Inputs inputs, Bounded bounded, long ooo, long idle, long horizon) {
            this.inputNames = inputNames;
            this.inputs = inputs;
            for (int i = 0; i < inputs.inputs.size(); i++) {
                index.put(inputs.inputs.get(i).topic, i);
            }
            this.bounded = bounded;
            this.ooo = ooo;
            this.idle = idle;
            this.horizon = horizon;
        }

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            ctx = context;
            seen = context.getStateStore("dedup");
            buffer = context.getStateStore("buffer");
            int p = context.taskId().partition();
            orderedSink = "ordered-" + p;
            for (String topic : index.keySet()) {
                TopicPartition tp = new TopicPartition(topic, p);
                mine.add(tp);
                position.put(tp, bounded.extent.get(tp)[0]);
            }
            // Idleness, as tidemark's watermark has it: a task with no input for `idle` lets
            // the wall clock advance its watermark so its tail is emitted.
            context.schedule(Duration.ofMillis(500), PunctuationType.WALL_CLOCK_TIME, now -> {
                if (System.currentTimeMillis() - lastRecordMs >= idle) {
                    emit(now - ooo);
                }
                checkDrained();
            });
            // The dedup horizon: ids whose event time the watermark has left `horizon` behind
            // are forgotten, checked once per horizon of stream time.
            context.schedule(Duration.ofMillis(horizon), PunctuationType.STREAM_TIME, ts -> purge());
        }

        private void purge() {
            if (maxTime == Long.MIN_VALUE) {
                return; // no valid event yet, so no watermark
            }
            long before = watermark() - horizon;
            List<String> old = new ArrayList<>();
            try (KeyValueIterator<String, Long> it = seen.all()) {
                while (it.hasNext()) {
                    KeyValue<String, Long> kv = it.next();
                    if (kv.value < before) {
                        old.add(kv.key);
                    }
                }
            }
            for (String id : old) {
                seen.delete(id);
            }
        }

        private long watermark() {
            return maxTime == Long.MIN_VALUE ? Long.MIN_VALUE : maxTime - ooo;
        }

        @Override
        public void process(Record<byte[], byte[]> r) {
            FIRST_RECORD_NS.compareAndSet(0, System.nanoTime());
            READ.incrementAndGet();
            long now = System.currentTimeMillis();
            lastRecordMs = now;
            RecordMetadata m = ctx.recordMetadata().orElseThrow();
            TopicPartition tp = new TopicPartition(m.topic(), m.partition());
            position.put(tp, m.offset() + 1);
            int input = index.get(m.topic());
            Event e = Event.check(r.value() == null ? new byte[0] : r.value(), now,
                    inputs.inputs.get(input).region, input, m.partition(), m.offset());
            if (!e.valid()) {
                INVALID.incrementAndGet();
                ctx.forward(new Record<>(null, e.payload, r.timestamp(), headers(e)), "invalid");
                checkDrained();
                return;
            }
            // First copy wins, late copies included.
            if (seen.get(e.id) != null) {
                DUPLICATES.incrementAndGet();
                checkDrained();
                return;
            }
            seen.put(e.id, e.time);
            // Idleness may have emitted past the stream-time watermark: whatever is below what
            // was emitted can no longer be ordered, and the buffer's range starts there.
            long wm = Math.max(watermark(), emittedUpTo);
            if (e.time < wm) {
                e.watermark = wm;
                e.arrivalMs = now;
                LATE.incrementAndGet();
                ctx.forward(new Record<>(e.id.getBytes(StandardCharsets.UTF_8), e.payload, e.time, headers(e)), "late");
            } else {
                buffer.put(bufferKey(e.time, e.id), bufferValue(e));
            }
            maxTime = Math.max(maxTime, e.time);
            // Emitting opens a store iterator, so it waits for the watermark to move 100 ms.
            if (watermark() >= emittedUpTo + 100) {
                emit(watermark());
            }
            checkDrained();
        }

        /** Emits every buffered event with time below {@code wm}, in (time, id) order. */
        private void emit(long wm) {
            if (wm <= emittedUpTo) {
                return;
            }
            // Everything buffered is at or above the last watermark emitted up to (what was below
            // it went late), so the range starts there, past the keys already deleted.
            Bytes from = bufferKey(emittedUpTo, "");
            Bytes to = bufferKey(wm, "");
            emittedUpTo = wm;
            List<Bytes> done = new ArrayList<>();
            try (KeyValueIterator<Bytes, byte[]> it = buffer.range(from, to)) {
                while (it.hasNext()) {
                    KeyValue<Bytes, byte[]> kv = it.next();
                    ByteBuffer k = ByteBuffer.wrap(kv.key.get());
                    long time = k.getLong() ^ Long.MIN_VALUE;
                    if (time >= wm) {
                        break;
                    }
                    byte[] id = Arrays.copyOfRange(kv.key.get(), 8, kv.key.get().length);
                    ByteBuffer v = ByteBuffer.wrap(kv.value);
                    Event e = new Event();
                    e.input = v.getInt();
                    e.sourcePartition = v.getInt();
                    e.sourceOffset = v.getLong();
                    byte[] payload = new byte[v.remaining()];
                    v.get(payload);
                    e.id = new String(id, StandardCharsets.UTF_8);
                    e.time = time;
                    e.region = inputs.inputs.get(e.input).region;
                    ctx.forward(new Record<>(id, payload, time, headers(e)), orderedSink);
                    ORDERED.incrementAndGet();
                    done.add(kv.key);
                }
            }
            for (Bytes k : done) {
                buffer.delete(k);
            }
        }

        private void checkDrained() {
            if (drained) {
                return;
            }
            for (TopicPartition tp : mine) {
                if (position.get(tp) < bounded.extent.get(tp)[1]) {
                    return;
                }
            }
            // The bounded input is read: everything buffered is emitted, as at tidemark's end.
            emit(Long.MAX_VALUE);
            drained = true;
            DRAINED.addAll(mine);
        }

        /** Sorts by time then id: the sign bit flipped so byte order is numeric order. */
        private static Bytes bufferKey(long time, String id) {
            byte[] idb = id.getBytes(StandardCharsets.UTF_8);
            return Bytes.wrap(ByteBuffer.allocate(8 + idb.length).putLong(time ^ Long.MIN_VALUE).put(idb).array());
        }

        private static byte[] bufferValue(Event e) {
            return ByteBuffer.allocate(16 + e.payload.length)
                    .putInt(e.input).putInt(e.sourcePartition).putLong(e.sourceOffset).put(e.payload).array();
        }

        private RecordHeaders headers(Event e) {
            RecordHeaders h = new RecordHeaders();
            for (String[] kv : e.headers(inputNames)) {
                h.add(kv[0], kv[1].getBytes(StandardCharsets.UTF_8));
            }
            return h;
        }
    }
}
