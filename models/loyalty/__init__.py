"""Loyalty: the programme's settings, the points ledger, purchases, tiers, rewards and CSV imports.

Modules, lowest first: programme (earning rule, promotions, the tiers table, the settings
cache, the errors), ledger (accounts, postings, balances, adjustments, expiry, statements),
purchases (recording and refunding), tiers (tier changes), rewards (catalogue, redemptions,
coupons), imports (CSV purchase import). Every function that writes runs inside the caller's
unit of work (models.uow) and records its own audit event.
"""
