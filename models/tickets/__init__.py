"""Tickets: complaints and messages, their workflow and SLA clocks, the public feedback form."""
