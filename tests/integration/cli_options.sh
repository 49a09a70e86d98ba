#!/usr/bin/env bash
# One command-line grammar for every command (cli/common.c, cli_args): for
# each command, "--opt=VALUE" means "--opt VALUE" (and "-oVALUE" where it has
# a short option with a value), "--" lets an operand start with '-', an
# unknown option and a missing value are usage errors (exit 2) naming the
# option, and --help exits 0. Then the --json outputs of cache, pull,
# generate, quantize and tokenize parse and hold the documented fields.
source "$(dirname "$0")/lib.bash"
cd "$TMP" || exit 1
Q=$MEMFIT_FIXTURES/llm/qwen2_gqa.gguf

# run NAME ARGS...: runs memfit with stdin from /dev/null; stderr in NAME.err, rc in NAME.rc.
run() {
    local name=$1
    shift
    "$MEMFIT" "$@" </dev/null >"$name.out" 2>"$name.err"
    echo $? >"$name.rc"
}
same_result() { # A B: same exit status and messages
    cmp -s "$1.rc" "$2.rc" && cmp -s "$1.err" "$2.err" || {
        echo "--- $1 (rc $(cat "$1.rc")):"; cat "$1.err"; echo "--- $2 (rc $(cat "$2.rc")):"; cat "$2.err"
        return 1
    }
}
usage_naming() { # NAME TEXT: exit 2 and TEXT in the message
    [[ $(cat "$1.rc") == 2 ]] && grep -qF -- "$2" "$1.err" || {
        echo "rc=$(cat "$1.rc"), expected 2 and '$2' in:"; cat "$1.err"
        return 1
    }
}
names_operand() { # NAME OPERAND: the operand reached the command as one (no option error)
    grep -qF -- "$2" "$1.err" && ! grep -q "unknown option" "$1.err" || { cat "$1.err"; return 1; }
}

# command | option with a value | a value it refuses (the message names it) | short letter | words to add
specs=(
    "report|top|99||"
    "monitor|interval|soon|i|"
    "convert|threads|0||"
    "analyze|run|0||"
    "plot|width|10||"
    "quantize|threads|0||"
    "pull|attempts|0||"
    "cache|max-size|lots||"
    "embed|batch|0||"
    "segment|crop-n-layers|99||"
    "generate|max-tokens|lots|n|"
    "chat|max-tokens|lots|n|"
    "run|max-tokens|lots|n|"
    "models|budget|lots||"
    "serve|port|70000||"
    "ps|timeout|soon||"
    "load|timeout|soon||"
    "stop|timeout|soon||"
    "cleanup|pid|0||"
    "tokenize|from-json|/nonexistent.json||--write-gguf o.gguf"
)
for spec in "${specs[@]}"; do
    IFS='|' read -r cmd opt bad short extra <<<"$spec"
    # shellcheck disable=SC2086 # $extra is words
    run eq "$cmd" "--$opt=$bad" $extra
    # shellcheck disable=SC2086
    run sep "$cmd" "--$opt" "$bad" $extra
    check "$cmd: --$opt=$bad is --$opt $bad" same_result eq sep
    check "$cmd: the value reached --$opt" grep -qF -- "$bad" eq.err
    if [[ -n $short ]]; then
        run short "$cmd" "-$short$bad"
        check "$cmd: -$short$bad is --$opt $bad" same_result short sep
    fi
    run missing "$cmd" "--$opt"
    check "$cmd: --$opt without a value: exit 2 naming it" usage_naming missing "option '--$opt' needs a value"
    run unknown "$cmd" --no-such-option
    check "$cmd: an unknown option: exit 2 naming it" usage_naming unknown "unknown option '--no-such-option'"
    run unknown_short "$cmd" -Z
    check "$cmd: an unknown short option: exit 2 naming it" usage_naming unknown_short "unknown option '-Z'"
    run help "$cmd" --help
    check "$cmd --help exits 0" test "$(cat help.rc)" = 0
    check "$cmd --help prints its usage" grep -q "^Usage: memfit $cmd" help.out
    run help_h "$cmd" -h
    check "$cmd -h is --help" cmp -s help.out help_h.out
done
run inspect_eq inspect --json=yes "$Q"
check "inspect: a value to a flag: exit 2 naming it" usage_naming inspect_eq "option '--json' takes no value"
run inspect_help inspect --help
check "inspect --help exits 0" test "$(cat inspect_help.rc)" = 0
run ambiguous generate --c "$Q"
check "an ambiguous abbreviation: exit 2 naming it" usage_naming ambiguous "ambiguous option '--c'"

# "--" ends the options: an operand may start with '-'.
dd=(
    "report -- -x|-x"
    "monitor -q --no-gpu -d 1s -- -x|'-x'"
    "inspect -- -x.gguf|-x.gguf"
    "convert -- -x.gguf o.gguf|-x.gguf"
    "analyze -- -x.jsonl|-x.jsonl"
    "plot -o a.svg -- -x.jsonl|-x.jsonl"
    "quantize --type q8_0 -- -x.gguf o.gguf|-x.gguf"
    "pull --offline --cache-dir c -- -x.gguf|-x.gguf"
    "cache --cache-dir c -- info -x|-x"
    "embed -- -x.gguf img.png|-x.gguf"
    "segment --point 1,1 -- m.gguf -x.png|-x.png"
    "generate -p hi -- -x.gguf|-x.gguf"
    "chat -- -x.gguf|-x.gguf"
    "run -- -x.yaml m in|-x.yaml"
    "models -- -x.yaml|-x.yaml"
    "serve --port 0 -- -x.gguf|-x.gguf"
    "ps -- -x|-x"
    "load -- -x y|-x"
    "stop -- -x y|-x"
    "cleanup -- -x|-x"
    "tokenize -- -x.gguf hi|-x.gguf"
)
for spec in "${dd[@]}"; do
    IFS='|' read -r words operand <<<"$spec"
    # shellcheck disable=SC2086 # $words is words
    run dashdash $words
    check "${words%% *}: -- then '$operand'" names_operand dashdash "$operand"
done
run no_dashdash inspect -x.gguf
check "without --, -x.gguf is an option" usage_naming no_dashdash "unknown option '-x'"

# Options after operands (GNU order), and a valid value given both ways.
"$MEMFIT" monitor -i 50ms -d 600ms -q --no-gpu -l m.jsonl || fail "monitor for a log"
"$MEMFIT" analyze m.jsonl --run=1 --warmup=5 >a1.txt 2>&1
"$MEMFIT" analyze --run 1 --warmup 5 m.jsonl >a2.txt 2>&1
check "analyze: --run=1 --warmup=5 after FILE is --run 1 --warmup 5 before it" cmp -s a1.txt a2.txt
check "plot -oFILE writes FILE" "$MEMFIT" plot m.jsonl -ochart.svg
check "... an SVG" grep -q "<svg" chart.svg

# --json outputs.
has_fields() { # FILE PYTHON-CONDITION over d (the parsed JSON)
    "$PY" -c "import json,sys
d=json.load(open(sys.argv[1]))
ok=bool($2)
print('ok' if ok else 'missing or wrong fields in: ' + json.dumps(d)[:600])
sys.exit(0 if ok else 1)" "$1"
}
size=$(stat -c %s "$Q")
"$MEMFIT" pull --cache-dir c --name tiny --json -q "$Q" >pull1.json
check "pull --json exits 0" test $? -eq 0
check "pull --json (a download)" has_fields pull1.json \
    "d['name']=='tiny' and len(d['digest'])==64 and d['size_bytes']==$size and d['from_cache'] is False and d['source'] and __import__('os').path.isfile(d['path'])"
"$MEMFIT" pull --cache-dir=c -q "$Q" >pull.txt
check "pull without --json exits 0 and prints the path" test $? -eq 0 -a -f "$(cat pull.txt)"
"$MEMFIT" pull --cache-dir=c --json -q "$Q" >pull2.json
check "pull --json again: from the cache, same digest" has_fields pull2.json \
    "d['from_cache'] is True and d['digest']==json.load(open('pull1.json'))['digest'] and d['name'] is None"
digest=$("$PY" -c "import json;print(json.load(open('pull1.json'))['digest'])")
"$MEMFIT" cache --cache-dir c ls --json >ls.json
check "cache ls --json" has_fields ls.json \
    "d['dir'] and d['size_bytes']==$size and any(e['digest']=='$digest' and e['name']=='tiny' and e['size_bytes']==$size and 'in_use' in e and 'last_used_ms' in e and 'path' in e and 'source' in e for e in d['entries']) and d['quarantine']['n_files']==0 and d['quarantine']['files']==[] and 'max_files' in d['quarantine'] and 'max_bytes' in d['quarantine'] and 'size_bytes' in d['quarantine']"
"$MEMFIT" cache --json --cache-dir c info tiny >info.json
check "cache info --json" has_fields info.json \
    "d['name']=='tiny' and d['digest']=='$digest' and d['size_bytes']==$size and d['in_use'] is False and d['path'].endswith('$digest')"
"$MEMFIT" cache --cache-dir c verify --json >verify.json
check "cache verify --json" has_fields verify.json "d['n_ok']>=1 and d['n_bad']==0 and d['read_bytes']>=$size"
"$MEMFIT" cache --cache-dir c gc --max-size=1G --json >gc.json
check "cache gc --json" has_fields gc.json \
    "d['n_removed']==0 and d['removed_bytes']==0 and d['size_bytes']==$size and d['n_kept_in_use']==0 and 'n_quarantine_removed' in d and 'quarantine_removed_bytes' in d"
"$MEMFIT" cache --cache-dir c rm tiny --json >rm.json
check "cache rm --json" has_fields rm.json "d['removed']=='tiny'"

"$MEMFIT" generate "$Q" -p "Hello" -n4 --temp=0 --json >gen.json 2>gen.err
check "generate --json exits 0" test $? -eq 0
check "generate --json" has_fields gen.json \
    "isinstance(d['text'],str) and d['finish_reason'] in ('stop','length') and d['tokens']['prompt']>0 and 0<d['tokens']['generated']<=4 and d['timings']['prompt_s']>=0 and d['timings']['generate_s']>=0 and 'prompt_tokens_per_s' in d['timings'] and 'generate_tokens_per_s' in d['timings'] and d['model']"
"$MEMFIT" generate "$Q" -p "Hello" -n 4 --temp 0 >gen.txt 2>/dev/null
check "generate --json's text is what it streams without --json" \
    "$PY" -c "import json,sys; sys.exit(json.load(open('gen.json'))['text']+'\n'!=open('gen.txt').read())"

cat >m.yaml <<YAML
cache_dir: $TMP/c
models:
  - name: tiny
    family: qwen2
    sources: [$Q]
YAML
"$MEMFIT" run m.yaml tiny "Hello" "World" -n3 --temp 0 --json >run.jsonl 2>run.err
check "run --json exits 0 (a text model)" test $? -eq 0
check "run --json: one generate-shaped object per prompt" "$PY" -c "import json,sys
d=[json.loads(l) for l in open('run.jsonl')]
sys.exit(not (len(d)==2 and [r['input'] for r in d]==['Hello','World'] and all(isinstance(r['text'],str) and 0<r['tokens']['generated']<=3 and r['finish_reason'] in ('stop','length') and 'timings' in r for r in d)))"

"$MEMFIT" quantize "$Q" q8.gguf --type=q8_0 --threads 2 --json -q >quant.json
check "quantize --json exits 0" test $? -eq 0
check "quantize --json" has_fields quant.json \
    "d['input']=='$Q' and d['output']=='q8.gguf' and d['format']=='gguf' and d['in_file_bytes']==$size and d['out_file_bytes']>0 and d['in_tensor_bytes']>0 and d['out_tensor_bytes']>0 and d['seconds']>=0 and d['threads']==2 and d['n_tensors']==len(d['tensors']) and sum(d['tensors_by_type'].values())==d['n_tensors'] and d['tensors_by_type'].get('q8_0',0)>0 and all(set(t)=={'name','from','to','why'} for t in d['tensors'])"

"$MEMFIT" tokenize "$Q" --info --json >tinfo.json
check "tokenize --info --json" has_fields tinfo.json \
    "d['n_vocab']>0 and d['kind'] and 'bos' in d and 'eos' in d and isinstance(d['add_bos'],bool) and isinstance(d['chat_template'],bool)"
ids=$("$MEMFIT" tokenize "$Q" --ids-only --no-add "Hello world")
# shellcheck disable=SC2086 # the ids are words
"$MEMFIT" tokenize "$Q" --decode --json $ids >tdec.json
check "tokenize --decode --json" has_fields tdec.json "d['text']=='Hello world' and d['n_tokens']>0"

finish
