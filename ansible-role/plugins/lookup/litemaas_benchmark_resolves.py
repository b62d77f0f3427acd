"""Which of the given action names this Ansible run can resolve, in the order given.

The role reports through AgnosticD's agnosticd_user_info, whose name depends on where it
runs: AgnosticD v2 ships it in the agnosticd.core collection (the FQCN resolves), v1 as
an action plugin beside its main playbook (the short name resolves), a plain playbook
has neither. A task whose action does not resolve aborts the play when it is included,
and no rescue catches that, so the role asks Ansible's own plugin loader first (the same
resolution a task's action gets) and includes only a task file that will load.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: litemaas_benchmark_resolves
short_description: the action names, of those given, that resolve in this run
description:
  - Returns, in the order given, the names that Ansible's action plugin loader resolves
    (an FQCN through the collections on the search path, a short name through the
    configured and playbook-adjacent action plugin directories).
options:
  _terms:
    description: Action names, short or fully qualified.
    required: true
"""

EXAMPLES = r"""
- name: Pick the first reporting action that resolves
  ansible.builtin.set_fact:
    action: "{{ (query('litemaas_benchmark_resolves', 'agnosticd.core.agnosticd_user_info', 'agnosticd_user_info') + ['debug']) | first }}"
"""

RETURN = r"""
_raw:
  description: The names that resolve, in the order given.
  type: list
  elements: str
"""

from ansible.plugins.loader import action_loader
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        found = []
        for name in terms:
            context = action_loader.find_plugin_with_context(str(name))
            if context.resolved:
                found.append(str(name))
        return found
