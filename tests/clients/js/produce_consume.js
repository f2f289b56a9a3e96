// kafkajs: create a topic, produce N keyed records (acks=-1), consume them back with a
// consumer group, and check the group's committed offsets reach the log end.
//
// usage: node produce_consume.js BOOTSTRAP N
'use strict';

const { Kafka, logLevel, Partitioners } = require('kafkajs');

const [bootstrap, nArg] = process.argv.slice(2);
const n = Number(nArg);
const topic = 'js-data';
const groupId = 'js-group';
const partitions = 3;

// Client logging goes to stderr; stdout carries only the RESULT line.
const logCreator = () => ({ namespace, level, label, log }) => {
  process.stderr.write(`[kafkajs ${label}] ${namespace}: ${log.message}\n`);
};

const t0 = Date.now();
function progress(msg) {
  process.stderr.write(`${((Date.now() - t0) / 1000).toFixed(2)}s ${msg}\n`);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function waitFor(what, cond, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    check(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main() {
  const kafka = new Kafka({
    clientId: 'samsa-kafkajs-test',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator,
    retry: { retries: 5 },
  });

  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions }],
    waitForLeaders: true,
  });
  check(created, `createTopics returned ${created}`);

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const sent = new Map(); // "p:offset" -> i
  const batch = 100;
  for (let start = 0; start < n; start += batch) {
    const messages = [];
    for (let i = start; i < Math.min(n, start + batch); i++) {
      messages.push({ key: `key-${i}`, value: `value-${i}` });
    }
    // Explicit partitions: the acknowledged base offset of each partition's part of the
    // batch then gives every record's offset, in send order.
    const withPartition = messages.map((m, k) => ({ ...m, partition: (start + k) % partitions }));
    const byPartition = new Map();
    for (const m of withPartition) {
      if (!byPartition.has(m.partition)) byPartition.set(m.partition, []);
      byPartition.get(m.partition).push(m);
    }
    const res = await producer.send({ topic, acks: -1, messages: withPartition });
    for (const r of res) {
      check(r.errorCode === 0, `produce error ${JSON.stringify(r)}`);
      const ms = byPartition.get(r.partition);
      const base = Number(r.baseOffset);
      ms.forEach((m, k) => {
        const key = `${r.partition}:${base + k}`;
        check(!sent.has(key), `offset ${key} acknowledged twice`);
        sent.set(key, m.value);
      });
    }
  }
  await producer.disconnect();
  check(sent.size === n, `acknowledged ${sent.size} of ${n}`);
  progress(`produced ${n}`);

  // A short fetch wait: disconnect() waits for the in-flight long-poll fetch to return.
  const consumer = kafka.consumer({
    groupId,
    heartbeatInterval: 500,
    sessionTimeout: 10000,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const received = new Map();
  let failure = null;
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const key = `${partition}:${message.offset}`;
      if (received.has(key)) failure = failure || `record ${key} delivered twice`;
      received.set(key, message.value.toString());
    },
  });
  await waitFor(`${n} records`, () => failure !== null || received.size >= n);
  check(failure === null, failure);
  for (const [k, v] of sent) {
    check(received.get(k) === v, `record ${k}: got ${received.get(k)}, want ${v}`);
  }
  check(received.size === n, `received ${received.size} records, want ${n}`);
  progress(`consumed ${n}`);

  const ends = await admin.fetchTopicOffsets(topic);
  const endOf = new Map(ends.map((e) => [e.partition, e.high]));
  const committedOk = async () => {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return t.partitions.every((p) => p.offset === endOf.get(p.partition));
  };
  await waitFor('committed offsets at the log end', committedOk, 30000);
  progress('offsets committed');
  await consumer.disconnect();
  progress('consumer disconnected');

  const groups = await admin.listGroups();
  check(groups.groups.some((g) => g.groupId === groupId), `listGroups: ${JSON.stringify(groups)}`);
  await admin.disconnect();
  process.stdout.write(`RESULT produced=${sent.size} consumed=${received.size}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`FAILED: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
