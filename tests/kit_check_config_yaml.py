#!/usr/bin/env python3
"""Reads the effective-config dump that tests/kit_config.c wrote (kit_cfg_dump) with PyYAML, as a Python
script reading a checkpoint would, and checks that each value comes back with its type: floats written
in exponent form stay floats (PyYAML's YAML 1.1 resolver wants a dot: "1.0e-05", not "1e-05"), strings
that look like booleans stay strings, nesting is preserved.

usage: kit_check_config_yaml.py DUMP.yaml     (prints "N passed, M failed")
"""
import sys

from pytally import check, run


def main():
    import yaml
    with open(sys.argv[1]) as f:
        cfg = yaml.safe_load(f)
    t = cfg["training"]
    check(type(t["grad_clip"]) is float and t["grad_clip"] == 1e-5, "exponent float: %r" % t["grad_clip"])
    check(type(t["learning_rate"]) is float and t["learning_rate"] == 3e-4, "lr: %r" % t["learning_rate"])
    check(t["batch_size"] == 2 and type(t["batch_size"]) is int, "int")
    check(t["use_amp"] is True, "bool")
    check(cfg["data"]["data_dir"] == "yes", "a string that looks like a bool stays a string: %r" % cfg["data"]["data_dir"])
    check(cfg["data"]["mean"] == [0.485, 0.456, 0.406], "float list")
    check(cfg["data"]["milestones"] == [1.0, 2.5, 1e300] and all(type(v) is float for v in cfg["data"]["milestones"]),
          "floats list: %r" % cfg["data"]["milestones"])
    check(cfg["model"]["head"]["hidden_dim"] == 512, "nested section")
    check(cfg["model"]["backbone_name"] == "vitb14" and cfg["seed"] == 0, "string and top-level key")


if __name__ == "__main__":
    run(main)
