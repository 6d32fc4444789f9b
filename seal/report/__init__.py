"""Human-readable reports of agent runs. :func:`seal.report.html.write_html`: one self-contained page per trace."""

from seal.report.html import write_html

__all__ = ["write_html"]
