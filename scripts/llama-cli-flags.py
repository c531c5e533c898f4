#!/usr/bin/env python3
"""Prints the flags the vendored llama.cpp's llama-cli / llama-completion accept (from
common/arg.cpp), one per line: FLAG<TAB>VALUES<TAB>GROUP, where GROUP is the first flag of
its option (its aliases share it). Used to generate crates/acap-cli/src/llama_flags.rs:

    python3 scripts/llama-cli-flags.py ARG_CPP > /tmp/flags.tsv
"""
import re
import sys

src = open(sys.argv[1]).read()
WANTED = {"LLAMA_EXAMPLE_COMPLETION", "LLAMA_EXAMPLE_CLI", "LLAMA_EXAMPLE_COMMON"}
seen = set()
i = 0
while True:
    i = src.find("add_opt(common_arg(", i)
    if i < 0:
        break
    # The statement runs to the matching ')' of add_opt(.
    depth, j = 0, i + len("add_opt")
    while True:
        c = src[j]
        if c == '"':
            j += 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                break
        j += 1
    stmt = src[i:j + 1]
    i = j
    examples = re.search(r"set_examples\(\{([^}]*)\}\)", stmt)
    ex = {e.strip() for e in examples.group(1).split(",")} if examples else {"LLAMA_EXAMPLE_COMMON"}
    if not ex & WANTED:
        continue
    lists = re.findall(r"\{((?:\s*\"[^\"]+\"\s*,?)+)\}", stmt[:stmt.find("[](")])
    if not lists:
        continue
    lam = re.search(r"\[\]\(common_params\s*&\s*\w*\s*((?:,[^)]*)?)\)", stmt)
    params = lam.group(1) if lam else ""
    # `bool value` handlers are switches with a negated spelling: no value on the command line.
    values = 0 if re.search(r",\s*bool\b", params) else params.count(",")
    groups = [re.findall(r"\"([^\"]+)\"", l) for l in lists]
    first = groups[0][0]
    for gi, flags in enumerate(groups):
        for f in flags:
            if f in seen:
                continue
            seen.add(f)
            # A negated spelling ({"--no-x"}) takes no value.
            print(f"{f}\t{values if gi == 0 else 0}\t{first}")
