// Runs GGUF files in a real llama.cpp (the prebuilt CPU binary that node-llama-cpp brings from the
// npm registry; see tests/interop/package.json and scripts/bootstrap.sh) for the interop tests.
//
//   node llama_cpp.mjs MODULES_DIR JOBS.json
//
// MODULES_DIR holds node_modules/node-llama-cpp. JOBS.json is a list of jobs; the results, one per
// job and in the same order, are printed on stdout as one JSON array. Jobs:
//   {"op": "logits",   "model": F, "tokens": [ids]}        → {"logits": [[vocab floats] per token]}
//   {"op": "generate", "model": F, "tokens": [ids], "n": N} → {"tokens": [N greedy ids]}
//   {"op": "ppl", "model": F, "text": FILE, "ctx": L, "windows": W}
//        → windows-L perplexity: the whole file tokenised by the GGUF's own tokenizer (no BOS),
//          non-overlapping windows of L tokens (the last partial one dropped), the first W
//          windows, the L-1 next-token predictions of each: {"tokens", "windows", "nll", "ppl"}
//   {"op": "tokenize", "model": F, "text": FILE[, "special": true]} → {"tokens": [ids]}
// A job that fails gives {"error": message} (a model llama.cpp refuses to load, say).
// Everything runs on the CPU with flash attention off and an F32 KV cache, so the logits are
// llama.cpp's float32 arithmetic.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [modulesDir, jobsFile] = process.argv.slice(2);
if (!modulesDir || !jobsFile) {
  console.error("usage: node llama_cpp.mjs MODULES_DIR JOBS.json");
  process.exit(2);
}
const entry = path.join(modulesDir, "node_modules", "node-llama-cpp", "dist", "index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

// More threads than cores made llama.cpp about 1000x slower on these machines.
const threads = Math.max(1, Math.min(4, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
const llama = await getLlama({
  gpu: false,
  build: "never",
  skipDownload: true,
  logLevel: LlamaLogLevel.error,
  maxThreads: threads,
});

const jobs = JSON.parse(fs.readFileSync(jobsFile, "utf8"));
const models = new Map();

async function open(file, contextSize) {
  const key = file + "#" + contextSize;
  if (!models.has(key)) {
    const model = await llama.loadModel({modelPath: file, gpuLayers: 0});
    const context = await model.createContext({
      contextSize,
      batchSize: contextSize,
      sequences: 1,
      threads,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    models.set(key, {model, context, sequence: context.getSequence()});
  }
  return models.get(key);
}

async function closeAll() {
  for (const {model, context} of models.values()) {
    await context.dispose();
    await model.dispose();
  }
  models.clear();
}

// Full logits of every position, as float64 arrays indexed by token id.
async function logitsOf(m, tokens) {
  await m.sequence.clearHistory();
  const out = await m.sequence.controlledEvaluate(
      tokens.map((t) => [t, {generateNext: {logits: true}}]));
  return out.map((r) => {
    const row = new Array(r.next.logits.size).fill(0);
    for (const [id, v] of r.next.logits) row[id] = v;
    return row;
  });
}

// A context of a few tokens gave wrong logits at the last position (seen with 13 tokens, llama.cpp
// release v0.5.0): contexts are whole multiples of 64.
function ctxFor(job, needed) {
  return job.ctx ?? Math.ceil(Math.max(needed, 1) / 64) * 64;
}

async function run(job) {
  if (job.op === "logits") {
    const m = await open(job.model, ctxFor(job, job.tokens.length));
    return {logits: await logitsOf(m, job.tokens)};
  }
  if (job.op === "generate") {
    const m = await open(job.model, ctxFor(job, job.tokens.length + job.n));
    const tokens = [...job.tokens];
    const generated = [];
    for (let i = 0; i < job.n; ++i) {
      const logits = await logitsOf(m, tokens);
      const last = logits[logits.length - 1];
      let best = 0;
      for (let k = 1; k < last.length; ++k) if (last[k] > last[best]) best = k;
      generated.push(best);
      tokens.push(best);
    }
    return {tokens: generated};
  }
  if (job.op === "tokenize") {
    const m = await open(job.model, 64);
    // "special": match special-token strings in the text as tokenizers does (else they are text).
    const text = fs.readFileSync(job.text, "utf8");
    return {tokens: Array.from(m.model.tokenize(text, job.special === true))};
  }
  if (job.op === "ppl") {
    const m = await open(job.model, job.ctx);
    const ids = Array.from(m.model.tokenize(fs.readFileSync(job.text, "utf8")));
    const windows = Math.min(job.windows, Math.floor(ids.length / job.ctx));
    let nll = 0, count = 0;
    for (let w = 0; w < windows; ++w) {
      const window = ids.slice(w * job.ctx, (w + 1) * job.ctx);
      await m.sequence.clearHistory();
      // Per position only the next token's logit, the largest one and sum(exp(logit - max)):
      // -log p(next) = max + log(sum) - logit(next).
      const out = await m.sequence.controlledEvaluate(window.map((t, i) => i + 1 < window.length
          ? [t, {generateNext: {logits: {filter: {tokens: [window[i + 1]], includeTop: 1}},
                                totalLogitWeight: true}}]
          : t));
      for (let i = 0; i + 1 < window.length; ++i) {
        const next = out[i].next;
        const max = next.logits.values().next().value;  // sorted, largest first
        nll += max + Math.log(next.totalLogitWeight) - next.logits.get(window[i + 1]);
        ++count;
      }
    }
    return {tokens: ids.length, windows, predictions: count, nll: nll / count,
            ppl: Math.exp(nll / count)};
  }
  throw new Error("unknown op " + job.op);
}

const results = [];
for (const job of jobs) {
  try {
    results.push(await run(job));
  } catch (e) {
    results.push({error: String(e && e.message ? e.message : e)});
  }
  // One model at a time: a failed or finished model does not hold memory for the next job.
  if (job.keep !== true) await closeAll();
}
process.stdout.write(JSON.stringify(results));
await closeAll();
await llama.dispose();
