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
 * ordered partition has one writer. Checkpoints every second (tidemark commits every second) on
 * the default heap state backend; the sinks are at-least-once, acks=all, idempotent, or with
 * {@code --delivery exactly-once} transactional, committed at each checkpoint.
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

        System.err.printf("flink: %d records in %s, parallelism %d%n", in.records(), in.clusters.keySet(), parallelism);

        Configuration conf = new Configuration();
        // A failure ends the run with its cause instead of restarting it out of sight.
        conf.setString("restart-strategy.type", "none");
        // Checkpoints of the reorder buffer outgrow the JobManager's in-memory storage.
        conf.setString("execution.checkpointing.storage", "filesystem");
        conf.setString("execution.checkpointing.dir", "file://" + args.get("checkpoint-dir"));
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        env.enableCheckpointing(1000);

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
                    .setDeserializer(new Checking(in.of(cluster)));
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
        DataStream<Event> ordered = unique.keyBy(e -> e.partition, Types.INT)
                .process(new Reorder()).name("reorder");

        Properties producer = new Properties();
        producer.put(ProducerConfig.ACKS_CONFIG, "all");
        producer.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        producer.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        if (exactlyOnce) {
            // Flink's default (1 h) is above the broker's transaction.max.timeout.ms (15 min);
            // tidemark's transactions use 2 min.
            producer.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "120000");
        }
        DeliveryGuarantee guarantee = exactlyOnce ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE;
        ordered.sinkTo(sink(bootstrap, out + "-ordered", producer, true, guarantee)).name("ordered");
        unique.getSideOutput(LATE).sinkTo(sink(bootstrap, out + "-late", producer, false, guarantee)).name("late");
        valid.getSideOutput(INVALID).sinkTo(sink(bootstrap, out + "-invalid", producer, false, guarantee)).name("invalid");

        JobExecutionResult r = env.execute(name);
        long ms = r.getNetRuntime();
        System.out.printf("flink: ordered %s late %s invalid %s duplicates %s%n",
                r.getAccumulatorResult("ordered"), r.getAccumulatorResult("late"),
                r.getAccumulatorResult("invalid"), r.getAccumulatorResult("duplicates"));
        long read = (Long) r.getAccumulatorResult("read");
        System.out.printf("read %d records in %.2f s (%.0f records/s), job net runtime%n",
                read, ms / 1e3, read / (ms / 1e3));
    }

    private static KafkaSink<Event> sink(String bootstrap, String topic, Properties producer, boolean fixedPartition,
            DeliveryGuarantee guarantee) {
        KafkaRecordSerializationSchema<Event> schema = (e, ctx, ts) -> {
            RecordHeaders h = new RecordHeaders();
            for (String[] kv : e.headers()) {
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
        private final Map<String, Inputs.Input> topics = new java.util.HashMap<>();

        Checking(List<Inputs.Input> inputs) {
            for (Inputs.Input i : inputs) {
                topics.put(i.topic, i);
            }
        }

        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> r, Collector<Event> o) {
            Inputs.Input i = topics.get(r.topic());
            Event e = Event.check(r.value() == null ? new byte[0] : r.value(), System.currentTimeMillis(),
                    i.region, i.cluster + "/" + r.topic() + "/" + r.partition() + "/" + r.offset());
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

    /** Buffers an output partition's events by time; a time's events leave, sorted by id, when the watermark passes it. */
    static final class Reorder extends KeyedProcessFunction<Integer, Event, Event> {
        private transient MapState<Long, List<Event>> buffer;
        private transient LongCounter ordered;

        @Override
        public void open(OpenContext ctx) {
            buffer = getRuntimeContext().getMapState(new MapStateDescriptor<>("buffer", Types.LONG,
                    Types.LIST(TypeInformation.of(Event.class))));
            ordered = getRuntimeContext().getLongCounter("ordered");
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Event> o) throws Exception {
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
