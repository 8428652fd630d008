/*
 * A JVM upstream system on the other side of llm-router's wire: Apache Avro's
 * Java library (BinaryMessageEncoder / BinaryMessageDecoder, the reference
 * implementation of Avro single-object encoding) and Kafka's Java client.
 * It reads the contract's schemas from the .avsc files as they are.
 *
 * One source file, run by Java 17's source launcher (no build step); the jars
 * come from pom.xml beside it (tests/interop/java.py resolves them):
 *
 *   java -cp '<libs>/*' AvroInterop.java <command> <schemas dir> ...
 *
 *   headers      <schemas>                         one JSON line per schema: the 10 header bytes
 *                                                  BinaryMessageEncoder writes, and the fingerprint
 *                                                  as SchemaNormalization.parsingFingerprint64 gives it
 *   encode       <schemas> <out file> <request_id> <prompt> <max_tokens>
 *                                                  an LLMRequest, single-object encoded, into a file
 *   decode       <schemas> (<schema name> <file>)+ each file decoded by BinaryMessageDecoder, printed
 *                                                  as one JSON line
 *   produce      <schemas> <bootstrap> <topic> <request_id> <prompt> <max_tokens>
 *                                                  an LLMRequest produced with a KafkaProducer
 *   consume      <schemas> <bootstrap> <topic> <request_id> <timeout s>
 *                                                  the topic read from the beginning until the value
 *                                                  keyed request_id arrives; it is decoded as an
 *                                                  LLMResult and printed as JSON
 *
 * Exit status: 0 done, 2 usage, 3 nothing arrived in time, 4 undecodable.
 * Diagnostics go to stderr; stdout carries only the JSON.
 */

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class AvroInterop {

  static final int EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_UNDECODABLE = 4;
  static final HexFormat HEX = HexFormat.of();

  public static void main(String[] args) throws Exception {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");  // before Kafka's first logger
    System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
    if (args.length < 2) {
      usage("no command");
    }
    Path schemas = Path.of(args[1]);
    String[] rest = Arrays.copyOfRange(args, 2, args.length);
    switch (args[0]) {
      case "headers" -> headers(schemas);
      case "encode" -> encode(schemas, rest);
      case "decode" -> decode(schemas, rest);
      case "produce" -> produce(schemas, rest);
      case "consume" -> consume(schemas, rest);
      default -> usage("unknown command " + args[0]);
    }
  }

  static void usage(String why) {
    System.err.println("AvroInterop: " + why + "\nusage: java -cp '<libs>/*' AvroInterop.java "
        + "headers|encode|decode|produce|consume <schemas dir> ... (see the top of AvroInterop.java)");
    System.exit(EXIT_USAGE);
  }

  /** The schema in {@code <dir>/<name>.avsc}, parsed by Avro Java as it is. */
  static Schema schema(Path dir, String name) throws IOException {
    return new Schema.Parser().parse(dir.resolve(name + ".avsc").toFile());
  }

  /** The header of each schema as BinaryMessageEncoder writes it, beside parsingFingerprint64. */
  static void headers(Path dir) throws IOException {
    List<Path> files;
    try (Stream<Path> listing = Files.list(dir)) {
      files = listing.filter(p -> p.toString().endsWith(".avsc")).sorted().toList();
    }
    for (Path file : files) {
      Schema schema = new Schema.Parser().parse(file.toFile());
      ByteBuffer encoded = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema)
          .encode((GenericRecord) zero(schema));
      byte[] header = new byte[10];
      encoded.get(header);
      long fingerprint = SchemaNormalization.parsingFingerprint64(schema);
      System.out.printf("{\"schema\": \"%s\", \"header\": \"%s\", \"parsingFingerprint64\": %d, \"hex\": \"%016x\"}%n",
          schema.getName(), HEX.formatHex(header), fingerprint, fingerprint);
    }
  }

  /** A datum of {@code schema} with every field at its zero value (defaults are not needed to encode). */
  static Object zero(Schema schema) {
    return switch (schema.getType()) {
      case RECORD -> {
        GenericData.Record record = new GenericData.Record(schema);
        for (Schema.Field field : schema.getFields()) {
          record.put(field.pos(), zero(field.schema()));
        }
        yield record;
      }
      case UNION -> zero(schema.getTypes().get(0));
      case ARRAY -> new GenericData.Array<>(0, schema);
      case MAP -> Map.of();
      case STRING -> "";
      case BYTES -> ByteBuffer.allocate(0);
      case INT -> 0;
      case LONG -> 0L;
      case FLOAT -> 0f;
      case DOUBLE -> 0d;
      case BOOLEAN -> false;
      case NULL -> null;
      case ENUM -> new GenericData.EnumSymbol(schema, schema.getEnumSymbols().get(0));
      case FIXED -> new GenericData.Fixed(schema);
    };
  }

  /** An LLMRequest from the command line; every other field takes the schema's default. */
  static GenericRecord request(Path dir, String requestId, String prompt, String maxTokens) throws IOException {
    return new GenericRecordBuilder(schema(dir, "LLMRequest"))
        .set("request_id", requestId)
        .set("prompt", prompt)
        .set("max_tokens", Integer.parseInt(maxTokens))
        .set("created_at_ms", System.currentTimeMillis())
        .build();
  }

  static byte[] encodeRequest(Path dir, String[] args) throws IOException {
    GenericRecord record = request(dir, args[0], args[1], args[2]);
    ByteBuffer buffer = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), record.getSchema()).encode(record);
    byte[] bytes = new byte[buffer.remaining()];
    buffer.get(bytes);
    return bytes;
  }

  static void encode(Path dir, String[] args) throws IOException {
    if (args.length != 4) {
      usage("encode wants <out file> <request_id> <prompt> <max_tokens>");
    }
    byte[] bytes = encodeRequest(dir, Arrays.copyOfRange(args, 1, 4));
    Files.write(Path.of(args[0]), bytes);
    System.out.printf("{\"file\": \"%s\", \"bytes\": %d, \"header\": \"%s\"}%n",
        args[0], bytes.length, HEX.formatHex(bytes, 0, 10));
  }

  static void decode(Path dir, String[] args) throws IOException {
    if (args.length == 0 || args.length % 2 != 0) {
      usage("decode wants pairs of <schema name> <file>");
    }
    for (int i = 0; i < args.length; i += 2) {
      byte[] bytes = Files.readAllBytes(Path.of(args[i + 1]));
      System.out.println(GenericData.get().toString(decodeOrExit(schema(dir, args[i]), bytes, args[i + 1])));
    }
  }

  /** {@code bytes} read by BinaryMessageDecoder; exits with EXIT_UNDECODABLE and the reason otherwise. */
  static GenericRecord decodeOrExit(Schema schema, byte[] bytes, String what) throws IOException {
    try {
      return new BinaryMessageDecoder<GenericRecord>(GenericData.get(), schema).decode(bytes);
    } catch (AvroRuntimeException e) {  // MissingSchemaException, BadHeaderException, ...
      String header = HEX.formatHex(bytes, 0, Math.min(10, bytes.length));
      System.err.printf("AvroInterop: BinaryMessageDecoder(%s) cannot decode %s (header %s, want c301%s): %s: %s%n",
          schema.getName(), what, header, fingerprintBytes(schema), e.getClass().getSimpleName(), e.getMessage());
      System.exit(EXIT_UNDECODABLE);
      return null;
    }
  }

  static String fingerprintBytes(Schema schema) {
    ByteBuffer buffer = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    buffer.putLong(SchemaNormalization.parsingFingerprint64(schema));
    return HEX.formatHex(buffer.array());
  }

  static void produce(Path dir, String[] args) throws Exception {
    if (args.length != 5) {
      usage("produce wants <bootstrap> <topic> <request_id> <prompt> <max_tokens>");
    }
    byte[] value = encodeRequest(dir, Arrays.copyOfRange(args, 2, 5));
    Properties config = new Properties();
    config.put("bootstrap.servers", args[0]);
    config.put("acks", "all");
    config.put("max.block.ms", "30000");
    try (KafkaProducer<String, byte[]> producer =
             new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer())) {
      RecordMetadata sent = producer.send(new ProducerRecord<>(args[1], args[2], value)).get(60, TimeUnit.SECONDS);
      System.out.printf("{\"topic\": \"%s\", \"partition\": %d, \"offset\": %d, \"header\": \"%s\"}%n",
          sent.topic(), sent.partition(), sent.offset(), HEX.formatHex(value, 0, 10));
    }
  }

  static void consume(Path dir, String[] args) throws IOException {
    if (args.length != 4) {
      usage("consume wants <bootstrap> <topic> <request_id> <timeout s>");
    }
    String topic = args[1], requestId = args[2];
    long deadline = System.nanoTime() + (long) (Double.parseDouble(args[3]) * 1e9);
    Schema schema = schema(dir, "LLMResult");
    Properties config = new Properties();
    config.put("bootstrap.servers", args[0]);
    config.put("auto.offset.reset", "earliest");
    try (KafkaConsumer<String, byte[]> consumer =
             new KafkaConsumer<>(config, new StringDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> partitions = new ArrayList<>();
      consumer.partitionsFor(topic, Duration.ofSeconds(30))
          .forEach(p -> partitions.add(new TopicPartition(topic, p.partition())));
      if (partitions.isEmpty()) {
        System.err.printf("AvroInterop: topic %s does not exist on %s%n", topic, args[0]);
        System.exit(EXIT_TIMEOUT);
      }
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> message : consumer.poll(Duration.ofMillis(500))) {
          if (requestId.equals(message.key())) {
            String where = topic + "/" + message.partition() + "@" + message.offset();
            System.out.println(GenericData.get().toString(decodeOrExit(schema, message.value(), where)));
            return;
          }
        }
      }
    }
    System.err.printf("AvroInterop: no value keyed %s on %s within %s s%n", requestId, topic, args[3]);
    System.exit(EXIT_TIMEOUT);
  }
}
