"""Allotment: an entitlements runtime.

It answers, on every request, "may this run, and what does it cost?" from a customer's plan,
add-ons, trials, promotions and overrides.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
