"""Character sheets in the browser: a sheet group shows each sheet as a card with its figure
rendered in 3D, an admin promotes one from the review page, and the character page shows
the stored figure."""

import textwrap

from playwright.sync_api import expect

from tests.characters.test_sheets import SAMPLE

pytestmark = __import__("pytest").mark.browser

# A sheet run as an external backend would leave it: one valid sheet and one cut short.
MAKE_SHEETS = textwrap.dedent("""
    import json
    from django.db import transaction
    from labelling.characters import services as character_services
    from labelling.records import services as record_services
    from labelling.models import Rubric
    sample = {sample!r}
    with transaction.atomic():
        run, _ = character_services.sheet_run_start(concept="a retired lighthouse keeper", count=2, enqueue=False,
                                          rubric=Rubric.objects.get(slug="sheet-coherence"))
        group = record_services.group_for(run=run, prompt=run.prompt_set.prompts.get())
        for index, text in enumerate([sample, sample[:200]]):
            record_services.generation_record(group=group, index=index, messages=[], raw_text=text, producer=None,
                                       run=run, structured=True)
    print(group.pk)
""")


def _figure_loaded(page, selector: str) -> None:
    """model-viewer fetched, parsed and shows the .glb (`modelIsVisible` turns true) once scrolled
    into view (it loads lazily, as a reader reaches it)."""
    page.locator(selector).scroll_into_view_if_needed()
    # A locator assertion, not wait_for_function: the page's CSP forbids evaluating strings.
    expect(page.locator(selector)).to_have_js_property("modelIsVisible", True, timeout=30_000)


def test_a_sheet_group_shows_cards_with_3d_figures_and_an_admin_promotes_one(sign_in, live_app):
    live_app.manage("shell", "-c", MAKE_SHEETS.format(sample=SAMPLE))
    page = sign_in("admin")
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/review/?policy=fifo")
    for _ in range(12):  # skip to the sheet group (the newest)
        if page.locator(".sheet-card").count():
            break
        lease = page.locator(".lease").inner_text()
        page.keyboard.press("s")
        expect(page.locator(".lease")).not_to_have_text(lease)
    card = page.locator(".sheet-card")
    expect(card).to_have_count(1)
    expect(card.locator("h3")).to_contain_text("Maren Tollis")
    expect(page.locator(".sheet-invalid")).to_contain_text("Not a valid character sheet")
    _figure_loaded(page, ".sheet-card model-viewer")

    page.fill(".promote input[name^=slug-]", "Maren Tollis")  # not a slug: told so beside the box
    page.click(".promote button")
    expect(page.locator(".promote .error")).to_contain_text("lowercase letters and digits")
    assert "[a-z0-9]" not in page.locator(".promote .error").inner_text()
    page.fill(".promote input[name^=slug-]", "maren")
    page.click(".promote button")
    page.wait_for_url(f"{live_app.url}/characters/maren/")
    expect(page.locator("h1")).to_contain_text("Maren Tollis")
    _figure_loaded(page, "model-viewer")
    glb = page.request.get(page.locator("a[href$='.glb']").first.get_attribute("href"))
    assert glb.ok and glb.body()[:4] == b"glTF"
    assert not errors, errors
