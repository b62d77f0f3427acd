"""Test double of AgnosticD's agnosticd_user_data lookup: the values that earlier
workloads saved with agnosticd_user_info data, read as AgnosticD reads them, from
{output_dir}/provision-user-data.yaml (None for a key that is not there)."""

from __future__ import annotations

import os

import yaml
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, action="provision", **kwargs):
        variables = variables or {}
        output_dir = variables.get("output_dir") or variables.get("playbook_dir") or "."
        output_dir = str(self._templar.template(output_dir))
        try:
            with open(os.path.join(output_dir, f"{action}-user-data.yaml"), encoding="utf-8") as fh:
                user_data = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            user_data = {}
        return [user_data if term == "*" else user_data.get(term) for term in terms]
