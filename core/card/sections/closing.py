"""The card's closing sections: Ethics Checklist, Citation, More Information, authors, contact, Warnings."""

from __future__ import annotations

from core.card import texts
from core.card.document import Bullets, Callout, CodeBlock, Mono, Para, Table
from core.card.overrides import ETHICS_ITEMS, ETHICS_STATUSES
from core.card.sections.common import section


def ethics_checklist(facts) -> list:
    evidence = facts.risks.evidence  # the measured evidence each item rests on (core.card.risks)
    cited = facts.review.evidence  # the review's findings bearing on each item (core.card.review)
    rows = [[ETHICS_ITEMS[key], entry["status"], entry["notes"] or "-",
             "; ".join(e for e in (evidence.get(key), cited.get(key)) if e) or "-"]
            for key, entry in facts.ethics.items()]
    still_open = [row[0] for row in rows if row[1] == "open"]
    return [section("Ethics Checklist", 2,
                    Para(["Filled in by the authors in ", Mono(facts.overrides_file),
                          f"; statuses: {', '.join(ETHICS_STATUSES)}."]),
                    Table(["item", "status", "notes", "evidence"], rows),
                    Callout(["Open items: " + ", ".join(still_open) + "."]) if still_open else None)]


def citation(facts) -> list:
    overrides = facts.overrides
    authors = overrides.get("developers") or overrides.get("model_card_authors") or "not stated"
    this = texts.embedding_bibtex(facts.name, facts.token, authors, facts.date[:4], overrides.get("repo"))
    return [section("Citation", 2,
                    Para(["This embedding (BibTeX; authors and address from ", Mono(facts.overrides_file), "):"]),
                    CodeBlock("bibtex", this),
                    Para(["The methods and software it rests on (BibTeX): textual inversion, latent diffusion, "
                          "model cards, CLIP, OpenCLIP, KerasCV and the emissions method:"]),
                    CodeBlock("bibtex", texts.CITATIONS_BIBTEX),
                    Para(["APA:"]), Bullets([[text] for text in texts.CITATIONS_APA]))]


def about_the_card(facts) -> list:
    overrides = facts.overrides
    more = [section("More Information", 2, Para([overrides["notes"]]))] if "notes" in overrides else []
    return more + [
        section("Model Card Authors", 2, Para([overrides.get("model_card_authors", "not stated")])),
        section("Model Card Contact", 2, Para([overrides.get("contact", "not stated")])),
    ]


def warnings(facts) -> list:
    return [section("Warnings", 2, Bullets([[text] for text in facts.warnings]) if facts.warnings
                    else Para(["None."]))]
