#!/usr/bin/env bash
# Grammar-constrained generation end to end (`memfit generate --json-object` and
# `--json-schema`, src/models/grammar*.c) on the tiny random-weight Qwen2
# fixture, whose unconstrained text is garbage: with 20 seeds each, every
# output must parse with Python's json module (an object for --json-object) and
# validate against the schema (json_schema_check.py, an independent
# validator for the subset); unsupported and wrong schemas are refused with
# the keyword or place named; a token limit that comes first is reported.
source "$(dirname "$0")/lib.bash"
[[ -x $PY ]] || skip "$PY is missing (Debian package python3)"
MODEL=$MEMFIT_FIXTURES/llm/qwen2_gqa.gguf
CHECKER=$MEMFIT_SOURCE/tests/integration/json_schema_check.py
GEN=("$MEMFIT" generate "$MODEL" -p "Answer in JSON" --ctx 2048 -n 2000)

gen_all() { # name, minimum complete, generate options...: outputs of 20 seeds in $TMP/name.*.json
    local name=$1 min=$2 s done=0
    shift 2
    for s in $(seq 1 20); do
        "${GEN[@]}" --seed "$s" "$@" >"$TMP/$name.$s.out" 2>"$TMP/$name.$s.err" || return 1
        if grep -q "token limit came before" "$TMP/$name.$s.err"; then
            echo "seed $s: stopped by the token limit (the output may be incomplete)"
        else
            mv "$TMP/$name.$s.out" "$TMP/$name.$s.json"
            done=$((done + 1))
        fi
    done
    echo "$done of 20 complete"
    [[ $done -ge $min ]]
}

# Any JSON object: strings are unbounded, so a seed could in principle reach
# the token limit (none does at present); every complete output must parse.
check "json_object: 20 seeds generate, at least 18 to completion" gen_all obj 18 --json-object
check "json_object: every complete output is a JSON object" $PY "$CHECKER" "$TMP"/obj.*.json
greedy_and_hot() {
    "${GEN[@]}" --json-object --temp 0 >"$TMP/g.json" &&
        "${GEN[@]}" --json-object --temp 2 --top-k 0 --top-p 1 --min-p 0 --seed 3 >"$TMP/h.json" &&
        $PY "$CHECKER" "$TMP/g.json" "$TMP/h.json"
}
check "json_object, greedy and hot: still objects" greedy_and_hot

cat >"$TMP/schema.json" <<'JSON'
{"type": "object", "title": "person",
 "properties": {
   "name": {"type": "string", "minLength": 1, "maxLength": 12},
   "age": {"type": "integer"},
   "score": {"type": "number"},
   "tags": {"type": "array", "items": {"enum": ["a", "b", "c\"d", 7, null]},
            "minItems": 1, "maxItems": 3},
   "ok": {"type": "boolean"},
   "kind": {"const": "x"},
   "maybe": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
   "nested": {"type": "object", "properties": {"z": {"type": ["integer", "null"]}},
              "required": ["z"], "additionalProperties": false}},
 "required": ["name", "age", "tags", "nested"],
 "additionalProperties": false}
JSON
# This schema bounds the output's length (strings, items, digits and
# whitespace runs are bounded): every seed must complete within 2000 tokens.
check "json_schema: 20 seeds generate to completion" gen_all sch 20 --json-schema "$TMP/schema.json"
check "json_schema: every output validates" \
    $PY "$CHECKER" --schema "$TMP/schema.json" "$TMP"/sch.*.json

refused() { # expected text, schema text
    printf '%s' "$2" >"$TMP/bad.json"
    "${GEN[@]}" --json-schema "$TMP/bad.json" >"$TMP/bad.out" 2>&1
    local rc=$?
    [[ $rc -eq 1 ]] && grep -qF -- "$1" "$TMP/bad.out" || {
        echo "rc $rc: $(cat "$TMP/bad.out")"
        return 1
    }
}
check "an unsupported keyword is named" refused '#/properties/n: keyword "minimum" is not supported' \
    '{"type":"object","properties":{"n":{"type":"integer","minimum":0}}}'
check "\$ref is refused" refused 'keyword "$ref" is not supported' '{"$ref":"#/$defs/a"}'
check "minItems above maxItems" refused '#: minItems 3 is above maxItems 1' \
    '{"type":"array","minItems":3,"maxItems":1}'
check "required but forbidden" refused 'required property "b" is not in "properties"' \
    '{"type":"object","properties":{"a":true},"required":["b"],"additionalProperties":false}'
check "alternatives that start alike" refused 'can start like an earlier one' \
    '{"anyOf":[{"type":"integer"},{"type":"number"}]}'
check "not JSON" refused 'json schema: line 1' '{"type":'

limited() {
    "${GEN[@]}" --json-object -n 3 --seed 1 >"$TMP/lim.out" 2>"$TMP/lim.err" &&
        grep -q "token limit came before the JSON was complete" "$TMP/lim.err"
}
check "a token limit before the end is reported" limited
both() {
    "${GEN[@]}" --json-object --json-schema x >/dev/null 2>&1
    [[ $? -eq 2 ]]
}
check "--json with --json-schema is a usage error" both
finish
