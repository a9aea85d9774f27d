package dev.tidemark.bench;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;

/**
 * tidemark's job in Flink's DataStream API, local execution with parallelism 2, written as a
 * Flink user would: a bounded KafkaSource with per-partition watermarks
 * ({@code forBoundedOutOfOrderness(2s).withIdleness(5s)}), invalid records split off to a side
 * output, a dedup keyed by id with TTL'd state, late events (below the operator's watermark) to
 * a side output, and event-time order from event-time timers keyed by output partition, so each
 * ordered partition has one writer. State is on the default heap backend.
 *
 * <p>Two comparisons, as {@code bench/run-all} runs them:
 * <ul>
 *   <li>in memory: {@code --checkpoint-interval 0} (no checkpoints) and at-least-once sinks,
 *   against tidemark's at_least_once;</li>
 *   <li>durable: {@code --delivery exactly-once}, transactional sinks committed at each
 *   checkpoint, with {@code --checkpoint-interval} equal to tidemark's commit_interval (1 s),
 *   against tidemark's exactly_once.</li>
 * </ul>
 *
 * <p>Tuned as Flink's documentation advises:
 * <ul>
 *   <li>object reuse on (Flink's "Execution Configuration" page: chained operators pass objects
 *   without copying them; safe here, as no function keeps or changes an object it has already
 *   emitted);</li>
 *   <li>{@code pipeline.generic-types: false} ("Data Types &amp; Serialization": fail rather than
 *   fall back to Kryo), which proves every type on the wire is a POJO or a basic type;</li>
 *   <li>checkpoint mode at-least-once when the sinks are at-least-once ("Checkpointing": exactly
 *   once aligns barriers, which an at-least-once sink gains nothing from);</li>
 *   <li>the source position as numbers, its text built only in the sink;</li>
 *   <li>the producers' settings shared with the other systems ({@link ClientSettings}).</li>
 * </ul>
 *
 * <p>Reorder is keyed by a route key per output partition chosen so that the partitions spread
 * over the subtasks. Keyed by the partition number itself, Flink's key-group hashing put all
 * four partitions on subtask 1 at parallelism 2 (key groups 94, 86, 127 and 113 of 128). The
 * job prints how many events each reorder subtask handled.
 *
 * <p>Where Flink differs from tidemark: state TTL runs on processing time, not on the event-time
 * horizon; late routing is a ProcessFunction's side output, since the job has no windows for
 * {@code sideOutputLateData}.
 */
public final class FlinkJob {
    static final OutputTag<Event> INVALID = new OutputTag<>("invalid", TypeInformation.of(Event.class));
    static final OutputTag<Event> LATE = new OutputTag<>("late", TypeInformation.of(Event.class));

    public static void main(String[] argv) throws Exception {
        Args args = new Args(argv);
        Inputs in = new Inputs(args);
        String bootstrap = in.outputBootstrap();
        String name = args.get("name");
        String out = args.get("out");
        long ooo = args.millis("max-out-of-orderness", "2s");
        long idle = args.millis("idle-timeout", "5s");
        long horizon = args.millis("horizon", "10m");
        int parallelism = args.getInt("parallelism", 2);
        int partitions = args.getInt("partitions", 4);
        // Unbounded for the latency runs: the job reads until it is stopped.
        boolean bounded = !Boolean.parseBoolean(args.get("unbounded", "false"));
        // exactly-once: transactional sinks committed at each checkpoint, against tidemark's
        // exactly_once; at-least-once (the default) against tidemark's at_least_once.
        String delivery = args.get("delivery", "at-least-once");
        if (!delivery.equals("at-least-once") && !delivery.equals("exactly-once")) {
            throw new IllegalArgumentException("--delivery must be at-least-once or exactly-once, got " + delivery);
        }
        boolean exactlyOnce = delivery.equals("exactly-once");
        // 0: no checkpoints at all (the in-memory comparison).
        long checkpointMs = args.millis("checkpoint-interval", "1s");
        if (exactlyOnce && checkpointMs == 0) {
            throw new IllegalArgumentException("--delivery exactly-once commits at checkpoints: it needs --checkpoint-interval");
        }

        System.err.printf("flink: %d records in %s, parallelism %d%n", in.records(), in.clusters.keySet(), parallelism);

        Configuration conf = new Configuration();
        // A failure ends the run with its cause instead of restarting it out of sight.
        conf.setString("restart-strategy.type", "none");
        // Checkpoints of the reorder buffer outgrow the JobManager's in-memory storage.
        conf.setString("execution.checkpointing.storage", "filesystem");
        conf.setString("execution.checkpointing.dir", "file://" + args.get("checkpoint-dir"));
        conf.setString("pipeline.generic-types", "false");
        conf.setString("pipeline.object-reuse", "true");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        env.setMaxParallelism(MAX_PARALLELISM);
        if (checkpointMs > 0) {
            env.enableCheckpointing(checkpointMs,
                    exactlyOnce ? CheckpointingMode.EXACTLY_ONCE : CheckpointingMode.AT_LEAST_ONCE);
        }
        String[] inputNames = in.names();

        WatermarkStrategy<Event> watermarks = WatermarkStrategy
                .<Event>forBoundedOutOfOrderness(Duration.ofMillis(ooo))
                .withIdleness(Duration.ofMillis(idle))
                // Invalid records have no event time and must not move the watermark.
                .withTimestampAssigner((e, ts) -> e.valid() ? e.time : Long.MIN_VALUE);
        // One source per cluster; downstream operators take the minimum of their watermarks.
        DataStream<Event> input = null;
        for (String cluster : in.clusters.keySet()) {
            if (in.of(cluster).isEmpty()) {
                continue;
            }
            var builder = KafkaSource.<Event>builder()
                    .setBootstrapServers(in.clusters.get(cluster))
                    .setTopics(in.topics(cluster))
                    .setGroupId(name)
                    .setStartingOffsets(OffsetsInitializer.earliest())
                    .setProperties(ClientSettings.consumer())
                    .setDeserializer(new Checking(in, cluster));
            if (bounded) {
                // Bounded like tidemark's --bounded: up to the end offsets at start.
                builder.setBounded(OffsetsInitializer.latest());
            }
            KafkaSource<Event> source = builder.build();
            DataStream<Event> s = env.fromSource(source, watermarks, cluster);
            input = input == null ? s : input.union(s);
        }

        SingleOutputStreamOperator<Event> valid = input.process(new Validate()).name("validate");
        SingleOutputStreamOperator<Event> unique = valid.keyBy(e -> e.id)
                .process(new Dedup(horizon, partitions)).name("dedup");
        int[] route = routeKeys(partitions, parallelism);
        DataStream<Event> ordered = unique.keyBy(e -> route[e.partition], Types.INT)
                .process(new Reorder()).name("reorder");

        Properties producer = ClientSettings.producer();
        if (exactlyOnce) {
            // Flink's default (1 h) is above the broker's transaction.max.timeout.ms (15 min);
            // tidemark's transactions use 2 min.
            producer.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "120000");
        }
        DeliveryGuarantee guarantee = exactlyOnce ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE;
        ordered.sinkTo(sink(bootstrap, out + "-ordered", producer, true, guarantee, inputNames)).name("ordered");
        unique.getSideOutput(LATE).sinkTo(sink(bootstrap, out + "-late", producer, false, guarantee, inputNames))
                .name("late");
        valid.getSideOutput(INVALID).sinkTo(sink(bootstrap, out + "-invalid", producer, false, guarantee, inputNames))
                .name("invalid");

        JobExecutionResult r = env.execute(name);
        long ms = r.getNetRuntime();
        System.out.printf("flink: ordered %s late %s invalid %s duplicates %s%n",
                r.getAccumulatorResult("ordered"), r.getAccumulatorResult("late"),
                r.getAccumulatorResult("invalid"), r.getAccumulatorResult("duplicates"));
        StringBuilder subtasks = new StringBuilder();
        for (int i = 0; i < parallelism; i++) {
            Object n = r.getAccumulatorResult("reorder-subtask-" + i);
            subtasks.append(i == 0 ? "" : " ").append(n == null ? 0 : n);
        }
        System.out.printf("flink: reorder subtasks %s%n", subtasks);
        long read = (Long) r.getAccumulatorResult("read");
        System.out.printf("read %d records in %.2f s (%.0f records/s), job net runtime%n",
                read, ms / 1e3, read / (ms / 1e3));
    }

    /** Flink's default for a parallelism this small, set so the route keys below are computed for it. */
    static final int MAX_PARALLELISM = 128;

    /**
     * A key per output partition such that partition {@code p} goes to reorder subtask
     * {@code p % parallelism}: the partitions spread evenly over the subtasks, whatever the
     * key-group hash makes of the numbers 0, 1, 2, ....
     */
    static int[] routeKeys(int partitions, int parallelism) {
        int[] keys = new int[partitions];
        int candidate = 0;
        for (int p = 0; p < partitions; p++) {
            while (KeyGroupRangeAssignment.assignKeyToParallelOperator(candidate, MAX_PARALLELISM, parallelism)
                    != p % parallelism) {
                candidate++;
            }
            keys[p] = candidate++;
        }
        return keys;
    }

    private static KafkaSink<Event> sink(String bootstrap, String topic, Properties producer, boolean fixedPartition,
            DeliveryGuarantee guarantee, String[] inputs) {
        KafkaRecordSerializationSchema<Event> schema = (e, ctx, ts) -> {
            RecordHeaders h = new RecordHeaders();
            for (String[] kv : e.headers(inputs)) {
                h.add(kv[0], kv[1].getBytes(StandardCharsets.UTF_8));
            }
            byte[] key = e.id == null ? null : e.id.getBytes(StandardCharsets.UTF_8);
            return new ProducerRecord<>(topic, fixedPartition ? e.partition : null, null, key, e.payload, h);
        };
        return KafkaSink.<Event>builder()
                .setBootstrapServers(bootstrap)
                .setKafkaProducerConfig(producer)
                .setRecordSerializer(schema)
                .setDeliveryGuarantee(guarantee)
                // One prefix per output topic and run: a run never fences another's producers.
                .setTransactionalIdPrefix(topic)
                .build();
    }

    /** Bytes to checked events, counted; the source and region headers from where they were read. */
    static final class Checking implements KafkaRecordDeserializationSchema<Event> {
        /** Per topic of this cluster: its input's index and region. */
        private final Map<String, Integer> index = new java.util.HashMap<>();
        private final Map<String, String> region = new java.util.HashMap<>();

        Checking(Inputs inputs, String cluster) {
            for (Inputs.Input i : inputs.of(cluster)) {
                index.put(i.topic, inputs.indexOf(cluster, i.topic));
                region.put(i.topic, i.region);
            }
        }

        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> r, Collector<Event> o) {
            Event e = Event.check(r.value() == null ? new byte[0] : r.value(), System.currentTimeMillis(),
                    region.get(r.topic()), index.get(r.topic()), r.partition(), r.offset());
            o.collect(e);
        }

        @Override
        public TypeInformation<Event> getProducedType() {
            return TypeInformation.of(Event.class);
        }
    }

    /** Counts what was read, and splits the invalid records off. */
    static final class Validate extends ProcessFunction<Event, Event> {
        private transient LongCounter read;
        private transient LongCounter invalid;

        @Override
        public void open(OpenContext ctx) {
            read = getRuntimeContext().getLongCounter("read");
            invalid = getRuntimeContext().getLongCounter("invalid");
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Event> o) {
            read.add(1);
            if (e.valid()) {
                o.collect(e);
            } else {
                invalid.add(1);
                ctx.output(INVALID, e);
            }
        }
    }

    /** First copy wins, late copies included; the first copy of a late event goes to LATE. */
    static class Dedup extends KeyedProcessFunction<String, Event, Event> {
        private final long horizon;
        private final int partitions;
        private transient ValueState<Boolean> seen;
        private transient LongCounter duplicates;
        private transient LongCounter late;

        Dedup(long horizon, int partitions) {
            this.horizon = horizon;
            this.partitions = partitions;
        }

        @Override
        public void open(OpenContext ctx) {
            ValueStateDescriptor<Boolean> d = new ValueStateDescriptor<>("seen", Types.BOOLEAN);
            d.enableTimeToLive(StateTtlConfig.newBuilder(Duration.ofMillis(horizon)).build());
            seen = getRuntimeContext().getState(d);
            duplicates = getRuntimeContext().getLongCounter("duplicates");
            late = getRuntimeContext().getLongCounter("late");
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Event> o) throws Exception {
            if (seen.value() != null) {
                duplicates.add(1);
                return;
            }
            seen.update(Boolean.TRUE);
            long wm = ctx.timerService().currentWatermark();
            if (e.time < wm) {
                e.watermark = wm;
                e.arrivalMs = System.currentTimeMillis();
                late.add(1);
                ctx.output(LATE, e);
                return;
            }
            e.partition = Event.partitionOf(e.id, partitions);
            o.collect(e);
        }
    }

    /**
     * Buffers an output partition's events by time; a time's events leave, sorted by id, when the
     * watermark passes it. It keeps the events it is given across calls, which object reuse allows
     * here because they arrive over a keyBy: Flink deserializes what comes over the network into
     * new objects.
     */
    static final class Reorder extends KeyedProcessFunction<Integer, Event, Event> {
        private transient MapState<Long, List<Event>> buffer;
        private transient LongCounter ordered;
        private transient LongCounter mine;

        @Override
        public void open(OpenContext ctx) {
            buffer = getRuntimeContext().getMapState(new MapStateDescriptor<>("buffer", Types.LONG,
                    Types.LIST(TypeInformation.of(Event.class))));
            ordered = getRuntimeContext().getLongCounter("ordered");
            mine = getRuntimeContext().getLongCounter(
                    "reorder-subtask-" + getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Event> o) throws Exception {
            mine.add(1);
            List<Event> at = buffer.get(e.time);
            if (at == null) {
                at = new ArrayList<>();
                ctx.timerService().registerEventTimeTimer(e.time);
            }
            at.add(e);
            buffer.put(e.time, at);
        }

        @Override
        public void onTimer(long time, OnTimerContext ctx, Collector<Event> o) throws Exception {
            List<Event> at = buffer.get(time);
            if (at == null) {
                return;
            }
            Event[] sorted = at.toArray(new Event[0]);
            Arrays.sort(sorted, (a, b) -> a.id.compareTo(b.id));
            for (Event e : sorted) {
                o.collect(e);
            }
            ordered.add(sorted.length);
            buffer.remove(time);
        }
    }
}
