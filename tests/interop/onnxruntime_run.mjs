// Runs a decoder exported by `kiln export onnx` in ONNX Runtime (npm onnxruntime-node, CPU) the
// way Hugging Face Optimum's generation loop does: the prompt in one call with an empty cache,
// then one token per call, each call's present.N.key/value fed back as past_key_values.N.*.
//
//   node tests/interop/onnxruntime_run.mjs MODEL.onnx --ids "1 2 3" -n 8
//
// Prints one JSON object: the prompt's logits (every position, row-major (T, n_vocab)), the
// greedy continuation (argmax of each step's last logits, first index on ties) and the logits
// of each decode step. Also runs the prompt twice as a batch of 2, with the second row
// left-padded by one masked token, and reports how far its logits stray from the first row's
// (batch, attention_mask and position_ids are then checked too).
import ort from 'onnxruntime-node';

function parseArgs(argv) {
  const args = { model: null, ids: [], n: 8 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ids') args.ids = argv[++i].trim().split(/\s+/).map(Number);
    else if (argv[i] === '-n') args.n = Number(argv[++i]);
    else args.model = argv[i];
  }
  if (!args.model || args.ids.length === 0) {
    console.error('usage: onnxruntime_run.mjs MODEL.onnx --ids "1 2 3" [-n N]');
    process.exit(2);
  }
  return args;
}

const int64 = (values, dims) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims);

// The cache inputs' fixed sizes (n_head_kv, head_dim) from the graph's declared shapes.
function cacheLayout(session) {
  const layers = [];
  for (const meta of session.inputMetadata) {
    const m = /^past_key_values\.(\d+)\.key$/.exec(meta.name);
    if (m) layers.push({ index: Number(m[1]), kv: meta.shape[1], hd: meta.shape[3] });
  }
  return layers.sort((a, b) => a.index - b.index);
}

function emptyCache(layers, batch) {
  const feeds = {};
  for (const l of layers)
    for (const kind of ['key', 'value'])
      feeds[`past_key_values.${l.index}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [batch, l.kv, 0, l.hd]);
  return feeds;
}

function argmax(data, offset, n) {
  let best = 0;
  for (let j = 1; j < n; j++) if (data[offset + j] > data[offset + best]) best = j;
  return best;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(args.model, { intraOpNumThreads: 2 });
  const layers = cacheLayout(session);
  const T = args.ids.length;

  // The prompt, batch 1, empty cache.
  let out = await session.run({
    input_ids: int64(args.ids, [1, T]),
    attention_mask: int64(Array(T).fill(1), [1, T]),
    position_ids: int64([...Array(T).keys()], [1, T]),
    ...emptyCache(layers, 1),
  });
  const V = out.logits.dims[2];
  const promptLogits = Array.from(out.logits.data);

  // Greedy decode over the cache.
  const tokens = [];
  const stepLogits = [];
  let next = argmax(out.logits.data, (T - 1) * V, V);
  let past = T;
  for (let step = 0; step < args.n; step++) {
    tokens.push(next);
    if (step === args.n - 1) break;
    const feeds = {
      input_ids: int64([next], [1, 1]),
      attention_mask: int64(Array(past + 1).fill(1), [1, past + 1]),
      position_ids: int64([past], [1, 1]),
    };
    for (const l of layers)
      for (const kind of ['key', 'value']) feeds[`past_key_values.${l.index}.${kind}`] = out[`present.${l.index}.${kind}`];
    out = await session.run(feeds);
    stepLogits.push(Array.from(out.logits.data));
    next = argmax(out.logits.data, 0, V);
    past += 1;
  }

  // A batch of 2: the prompt then a masked pad token, and one masked pad token then the prompt
  // (its positions start at 0 after the pad). Both rows' real tokens must give the batch-1 logits.
  const padded = [0, ...args.ids];
  const batch = await session.run({
    input_ids: int64([...args.ids, 0, ...padded], [2, T + 1]),
    attention_mask: int64([...Array(T).fill(1), 0, 0, ...Array(T).fill(1)], [2, T + 1]),
    position_ids: int64([...[...Array(T).keys()], T, 0, ...[...Array(T).keys()]], [2, T + 1]),
    ...emptyCache(layers, 2),
  });
  let batchMaxDiff = 0;
  for (let t = 0; t < T; t++)
    for (let j = 0; j < V; j++) {
      const want = promptLogits[t * V + j];
      const row0 = batch.logits.data[t * V + j];
      const row1 = batch.logits.data[((T + 1) + t + 1) * V + j];
      batchMaxDiff = Math.max(batchMaxDiff, Math.abs(row0 - want), Math.abs(row1 - want));
    }

  process.stdout.write(
    JSON.stringify({ n_vocab: V, prompt_logits: promptLogits, tokens, step_logits: stepLogits, batch_max_diff: batchMaxDiff }) + '\n',
  );
}

main().catch((e) => {
  console.error(`onnxruntime_run: ${e.message ?? e}`);
  process.exit(1);
});
