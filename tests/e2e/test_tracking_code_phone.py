"""On a phone the tracking code reads in whole groups: it breaks between groups, never inside one."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page

GROUPS_ON_ONE_LINE = """
() => [...document.querySelectorAll('#tracking-code .group')].map(g => g.getClientRects().length)
"""


@pytest.mark.parametrize("width", [390, 320])
def test_the_tracking_code_never_wraps_inside_a_group_on_a_phone(page: Page, width: int):
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/feedback")
    page.get_by_label("Your message").fill("The parcel arrived broken.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url("**/feedback/sent")
    code = page.locator("#tracking-code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", code), code
    assert page.evaluate(GROUPS_ON_ONE_LINE) == [1, 1, 1, 1]
    font_px = float(page.locator("#tracking-code").evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    assert font_px >= 22
    box = page.locator("#tracking-code").bounding_box()
    assert box is not None and box["x"] + box["width"] <= width  # no sideways scrolling
