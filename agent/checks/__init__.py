"""The engineer's checks of a layer program: static (ast) and dynamic (run in a sandboxed child).

    from agent.checks import check_program
    report = check_program(source, get_fidelity("smoke"), workdir)
"""

from agent.checks.runner import check_program, dynamic_check
from agent.checks.static import static_check
from agent.checks.summary import check_summary

__all__ = ["check_program", "check_summary", "dynamic_check", "static_check"]
