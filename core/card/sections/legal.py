"""The card's legal sections: License and Use Restrictions (with the licence's duties, the embedding as a
Derivative, Attachment A, copyright and trademark for a character or a style, training-image licences,
third-party licences) and the closing Full Text of the licence. The texts and their sources are in legal.py."""

from __future__ import annotations

from core.card import legal, texts
from core.card.basemodel import base_model_claim
from core.card.document import Bold, Bullets, Callout, Link, Mono, Para, Table
from core.card.overrides import OWNER_NOT_STATED
from core.card.sections.common import section

LICENCE_TEXT_TITLE = "Full Text of the CreativeML Open RAIL-M Licence"


def _preamble(facts) -> Para:
    claim = base_model_claim(facts.run.weights, facts.overrides)
    licence_link = Link(texts.LICENSE_NAME, texts.LICENSE_URL)
    if claim.pipeline_check:
        return Para(["This embedding is passed on under the ", licence_link, " licence. It is a pipeline check "
                     "(random weights), not a Derivative of Stable Diffusion: see the subsection on Derivatives."])
    base_licence = f"base checkpoint's licence: {claim.licence}" if claim.licence_known else claim.licence
    return Para(["This embedding was trained through ", claim.name, " and is passed on under the ", licence_link,
                 f" licence ({base_licence}). Whoever passes it on takes on the conditions below."])


def _duties(facts) -> list:
    claim = base_model_claim(facts.run.weights, facts.overrides)
    base = "Stable Diffusion v1.x" if claim.pipeline_check else claim.name
    licence = texts.LICENSE_NAME if claim.pipeline_check else claim.licence
    items = [[text.format(license_file=legal.LICENSE_FILE_NAME)] for text in legal.LICENSE_DUTIES]
    return [Bullets(items), Para([legal.obtain_base_model(base, licence)])]


def _derivative(facts):
    if facts.pipeline_check:
        return section("The Embedding as a Derivative of the Model", 3, Para([legal.DERIVATIVE_RANDOM]))
    n_floats = facts.run.token.vectors * 768
    return section("The Embedding as a Derivative of the Model", 3,
                   Para([legal.DERIVATIVE_DEFINITION, " ", legal.DERIVATIVE_READING]),
                   Bullets([[text.format(n_floats=n_floats)] for text in legal.DERIVATIVE_UNCERTAIN]))


def _copyright(facts):
    notes = legal.COPYRIGHT_NOTES_CHARACTER if facts.is_character else legal.COPYRIGHT_NOTES_STYLE
    what = "the character" if facts.is_character else "the source works"
    holder = "Rights holder of the character" if facts.is_character else "Rights holders of the source works"
    return section(
        "Copyright and Trademark of Generated Images", 3,
        Para([f"{facts.token} learns ", facts.subject or ("a character" if facts.is_character else "a style"),
              f". {holder}, as stated by the authors: ", Bold(facts.owner), "."]),
        Callout(["The rights holder is not stated. Set ", Mono("owner"), " in ", Mono(facts.overrides_file),
                 f" to the holder named in the official © / ™ notice of {what}; this tool never guesses it."])
        if facts.owner == OWNER_NOT_STATED else None,
        Bullets([[text] for text in notes]))


def _training_image_licences(facts):
    training = facts.training_data
    rows = [[row.get("file", ""), row.get("license", "") or "UNKNOWN", row.get("source", ""), row.get("author", ""),
             f"{row.get('width', '')}x{row.get('height', '')}", (row.get("sha256", "") or "")[:12]]
            for row in training.rows]
    counts = ", ".join(f"{name} ({count})" for name, count in sorted(training.licenses.items())) or "none recorded"
    restricted = training.restricted_license_files
    what = "character" if facts.is_character else "source works"
    return section(
        "Training Image Licences", 3,
        Para([f"{len(training.rows)} training image(s); licences: {counts}."]),
        Callout(["Unknown licence: " + ", ".join(training.unknown_license_files) + ". Record the licence of each "
                 "of these images in dataset.csv, or remove them, before publishing."])
        if training.unknown_license_files else None,
        Callout([f"{len(restricted)} image(s) are "
                 + legal.TRAINING_IMAGES_RESTRICTED.format(files=", ".join(restricted))]) if restricted else None,
        Para([legal.TRAINING_IMAGES_PICTURE_ONLY.format(what=what)]) if training.rows else None,
        Callout(["No dataset.csv: the sources and licences of the training images were not recorded."])
        if not training.rows else None,
        Table(["file", "license", "source", "author", "size", "sha256 (first 12)"], rows) if rows else None)


def _third_party(facts):
    return section("Third-Party Licences", 3,
                   Table(["component", "licence", "note"], [list(row) for row in legal.THIRD_PARTY_LICENCES]))


def licence(facts) -> list:
    return [
        section("License and Use Restrictions", 2, Callout([legal.NOT_LEGAL_ADVICE], level="note"),
                _preamble(facts)),
        section("What the Licence Requires of Whoever Passes This Embedding On", 3, *_duties(facts)),
        _derivative(facts),
        section("Use Restrictions (Attachment A of the licence)", 3, Para([texts.USE_RESTRICTIONS_INTRO]),
                Bullets([[text] for text in texts.LICENSE_USE_RESTRICTIONS])),
        _copyright(facts),
        _training_image_licences(facts),
        _third_party(facts),
    ]


def licence_text(facts) -> list:
    """The licence word for word, one paragraph per line of the file (LICENSE 4(b): recipients get a copy, not a
    link). Paragraphs rather than a code block, so long lines wrap in every format."""
    lines = [line.strip() for line in legal.license_text().splitlines() if line.strip()]
    return [section(LICENCE_TEXT_TITLE, 2,
                    Callout(["Reproduced word for word from ", Link(legal.LICENSE_SOURCE_URL, legal.LICENSE_SOURCE_URL),
                             f" (file sha256 {legal.LICENSE_SHA256}); the file itself is {legal.LICENSE_FILE_NAME} "
                             "beside this card."], level="note"),
                    *[Para([line]) for line in lines])]
