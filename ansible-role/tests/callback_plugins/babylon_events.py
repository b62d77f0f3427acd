"""Records every task result as AWX records a job event, for the tests' reading of the
user info the way Babylon reads it: one JSON line per result, with the action as the
task wrote it (AWX's task_action: `debug`, `agnosticd.core.agnosticd_user_info`, ...)
and the result (AWX's res), to the file named by TURNBENCH_TEST_EVENTS."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: babylon_events
type: aggregate
short_description: task actions and results as job events, for the tests
description: Appends one JSON line per task result to the file named by TURNBENCH_TEST_EVENTS.
requirements: [enable in configuration]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "babylon_events"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, event, result):
        path = os.environ.get("TURNBENCH_TEST_EVENTS")
        if not path:
            return
        res = {k: v for k, v in dict(result._result).items() if not k.startswith("_ansible")}
        line = {"event": event, "task_action": result._task.action, "task": result._task.get_name(), "res": res}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record("runner_on_ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record("runner_on_failed", result)
