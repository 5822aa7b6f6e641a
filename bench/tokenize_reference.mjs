// Reference ids and speed from @lenml/tokenizers (a fork of transformers.js's tokenizers), for
// bench_tokenize and the interop test. Usage:
//   node tokenize_reference.mjs --modules DIR TOKENIZER_JSON TEXT_FILE [--config CONFIG_JSON]
//        [--repeat N] [--ids]
// DIR holds node_modules with @lenml/tokenizers (build/interop after scripts/bootstrap.sh).
// Prints one JSON object: {count, bytes, seconds: [...], mb_per_second_median, ids?}.
import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {join} from 'node:path';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const modules = opt('--modules', '.');
const configPath = opt('--config', null);
const repeat = Number(opt('--repeat', '1'));
const wantIds = args.includes('--ids');
const [tokenizerPath, textPath] = args.filter((a) => a !== '--ids');
if (!tokenizerPath || !textPath) {
  console.error(
      'usage: tokenize_reference.mjs --modules DIR TOKENIZER_JSON TEXT_FILE [--config F] [--repeat N] [--ids]');
  process.exit(2);
}
const require = createRequire(join(modules, 'package.json'));
const {TokenizerLoader} = require('@lenml/tokenizers');
const tokenizerJSON = JSON.parse(readFileSync(tokenizerPath, 'utf8'));
const tokenizerConfig = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
const tok = TokenizerLoader.fromPreTrained({tokenizerJSON, tokenizerConfig});
const text = readFileSync(textPath, 'utf8');
const bytes = Buffer.byteLength(text, 'utf8');
let ids = [];
const seconds = [];
for (let r = 0; r < repeat; ++r) {
  const t0 = process.hrtime.bigint();
  ids = tok.encode(text, {add_special_tokens: false});
  seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
const sorted = [...seconds].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)];
const out = {
  count: ids.length,
  bytes,
  seconds,
  mb_per_second_median: bytes / median / 1e6
};
if (wantIds) out.ids = ids;
console.log(JSON.stringify(out));
