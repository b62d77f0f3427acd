"""Test double of AgnosticD's agnosticd_user_info action plugin.

It checks its arguments the way the real plugin does (msg, data, user and body only;
msg and body exclusive; data a mapping), answers like it ("user.info: " + msg), and
appends its arguments as one JSON line to {output_dir}/agnosticd_user_info.jsonl, which
the tests read. It lives beside the test playbooks, as the real one lives beside
AgnosticD's main playbook, so the role's detection of the plugin is exercised too.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("msg", "data", "user", "body"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        msg = args.get("msg")
        body = args.get("body")
        data = args.get("data", {})
        if msg is not None and body is not None:
            return {**result, "failed": True, "msg": "msg and body are mutually exclusive"}
        if data and not isinstance(data, dict):
            return {**result, "failed": True, "msg": "data must be a dictionary of name/value pairs"}
        if msg is not None:
            result["msg"] = "user.info: " + str(msg)
            result["_ansible_verbose_always"] = True
        output_dir = self._templar.template(task_vars.get("output_dir", "."))
        record = {
            "msg": msg,
            "body": body,
            "user": args.get("user"),
            "data": data,
            "msg_is_str": isinstance(msg, str),
            "data_is_dict": isinstance(data, dict),
            "data_values_are_str": all(isinstance(v, str) for v in (data or {}).values()),
        }
        with open(os.path.join(output_dir, "agnosticd_user_info.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        result["changed"] = False
        result["failed"] = False
        return result
