#!/usr/bin/python3
"""Independent check of memfit's grammar-constrained output: each FILE must
hold one JSON document (Python's json module parses it) and, with --schema,
validate against that JSON Schema. Written from the JSON Schema spec for the
subset memfit supports (type, properties, required, additionalProperties,
items, minItems, maxItems, minLength, maxLength, enum, const, anyOf, oneOf);
it shares no code with memfit. Prints one line per failing file; exit 1 if
any fails."""
import json
import math
import sys


def is_type(v, t):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "null":
        return v is None
    raise ValueError("unknown type " + t)


def equal(a, b):
    # JSON equality: 1 == 1.0, but true != 1
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def errors(v, s, where="$"):
    if s is True:
        return []
    if s is False:
        return [where + ": false schema"]
    out = []
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(is_type(v, t) for t in types):
            out.append("%s: %r is not of type %s" % (where, v, types))
    if "enum" in s and not any(equal(v, e) for e in s["enum"]):
        out.append("%s: %r not in enum" % (where, v))
    if "const" in s and not equal(v, s["const"]):
        out.append("%s: %r is not the const" % (where, v))
    if "anyOf" in s and not any(not errors(v, a, where) for a in s["anyOf"]):
        out.append("%s: no anyOf alternative matches" % where)
    if "oneOf" in s and sum(1 for a in s["oneOf"] if not errors(v, a, where)) != 1:
        out.append("%s: not exactly one oneOf alternative matches" % where)
    if isinstance(v, dict):
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in v:
                out.append("%s: required %r missing" % (where, r))
        extra = s.get("additionalProperties", True)
        for k, x in v.items():
            if k in props:
                out += errors(x, props[k], where + "." + k)
            else:
                out += errors(x, extra, where + "." + k)
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", len(v)):
            out.append("%s: %d items" % (where, len(v)))
        for i, x in enumerate(v):
            out += errors(x, s.get("items", True), "%s[%d]" % (where, i))
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", len(v)):
            out.append("%s: %d characters" % (where, len(v)))
    return out


def main():
    args = sys.argv[1:]
    schema = None
    if args[:1] == ["--schema"]:
        with open(args[1], encoding="utf-8") as f:
            schema = json.load(f)
        args = args[2:]
    bad = 0
    for path in args:
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8", errors="strict")
            v = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as e:
            print("%s: does not parse: %s" % (path, e))
            bad += 1
            continue
        problems = errors(v, schema) if schema is not None else (
            [] if isinstance(v, dict) else ["not an object"])
        if problems:
            print("%s: %s" % (path, "; ".join(problems)))
            bad += 1
    sys.exit(1 if bad else 0)


main()
