"""Test double of AgnosticD's agnosticd_user_info action plugin, for v2 (this file, in
the agnosticd.core collection as v2 vendors it) and v1 (tests/action_plugins/, a link
to it, beside the test playbooks as v1's plugin lives beside its main playbook).

It checks its arguments as the real plugin does (msg, data, data_prefix, user and body;
msg and body exclusive; data a mapping), answers as it does ("user.info: " + msg, and
the data), saves as it does ({output_dir}/{ACTION}-user-info.yaml and
-user-data.yaml, data_prefix applied to the keys, data merged into what earlier calls
saved), and appends each call as one JSON line to {output_dir}/agnosticd_user_info.jsonl
for the tests: the arguments, data as saved (prefixed), and checks of their types.
"""

from __future__ import annotations

import json
import os

import yaml
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("msg", "data", "data_prefix", "user", "body"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        msg = args.get("msg")
        body = args.get("body")
        data = args.get("data", {})
        prefix = args.get("data_prefix") or ""
        if msg is not None and body is not None:
            return {**result, "failed": True, "msg": "msg and body are mutually exclusive"}
        if data and not isinstance(data, dict):
            return {**result, "failed": True, "msg": "data must be a dictionary of name/value pairs"}
        if msg is not None:
            result["msg"] = "user.info: " + str(msg)
            result["_ansible_verbose_always"] = True
        if data:
            result["data"] = data
        saved = {prefix + str(k): v for k, v in (data or {}).items()}
        output_dir = str(self._templar.template(task_vars.get("output_dir") or task_vars.get("playbook_dir") or "."))
        action = str(task_vars.get("ACTION") or "provision")
        if msg is not None:
            with open(os.path.join(output_dir, f"{action}-user-info.yaml"), "a", encoding="utf-8") as fh:
                fh.write("- " + json.dumps(str(msg)) + "\n")
        if saved:
            path = os.path.join(output_dir, f"{action}-user-data.yaml")
            try:
                with open(path, encoding="utf-8") as fh:
                    user_data = yaml.safe_load(fh) or {}
            except FileNotFoundError:
                user_data = {}
            user_data.update(json.loads(json.dumps(saved, default=str)))
            with open(path, "w", encoding="utf-8") as fh:
                yaml.safe_dump(user_data, fh, explicit_start=True, allow_unicode=True)
        record = {
            "msg": msg,
            "body": body,
            "user": args.get("user"),
            "data": saved,
            "data_prefix": args.get("data_prefix"),
            "msg_is_str": msg is None or isinstance(msg, str),
            "data_is_dict": isinstance(data, dict),
            "data_values_are_str": all(isinstance(v, str) for v in (data or {}).values()),
        }
        with open(os.path.join(output_dir, "agnosticd_user_info.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        result["changed"] = False
        result["failed"] = False
        return result
