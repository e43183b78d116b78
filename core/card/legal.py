"""The card's legal texts, each beside the primary source it rests on: the licence's duties, the embedding as a
Derivative, copyright and trademark notes (different for character and style runs), misuse limits, the basis of
the AI-disclosure item, training-image licences, third-party licences, and the licence text file itself.

None of this is legal advice, and the card says so (NOT_LEGAL_ADVICE). It states what the licence text says and
where the law does not settle a question; it must never be more certain than its sources. Sources (issue 22):
  LICENSE   CreativeML Open RAIL-M dated August 22, 2022: CompVis/stable-diffusion `LICENSE` at commit
            21f890f9da3cfbeaba8e2ac3c425ee9e998d5229, kept verbatim in licenses/CreativeML-OpenRAIL-M.txt.
            Paragraph 4's conditions are unlettered bullets in that file; the licence itself calls the first
            "4.a", so they are cited here as 4(a)-(e) in their order.
  SD card   Stable Diffusion v1 model card: CompVis/stable-diffusion `Stable_Diffusion_v1_Model_Card.md` at the same
            commit (the text of huggingface.co/CompVis/stable-diffusion-v1-4's README).
  KerasCV   keras-cv 0.9.0: `keras_cv/src/models/stable_diffusion/stable_diffusion.py`, the notice
            StableDiffusion.__init__ prints; its README's disclaimer ("The following underlying models are provided
            by third parties, and are subject to separate licenses: StableDiffusion, ..."); package licence
            Apache-2.0 (its METADATA).
  AI Act    Regulation (EU) 2024/1689, OJ L of 12.7.2024: Art. 3(4) and 3(60), Art. 50, Art. 113.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

LICENSE_PATH = Path(__file__).resolve().parent / "licenses" / "CreativeML-OpenRAIL-M.txt"
LICENSE_SHA256 = "be351ebe7ac01bcdbb018639aadcfd38f136b7dc3f2a3d4d3a24db51d1b210ef"  # LICENSE at 21f890f9
LICENSE_FILE_NAME = "LICENSE"  # what `card` writes beside README.md (the name the Hub shows as a repo's licence)
LICENSE_SOURCE_URL = "https://github.com/CompVis/stable-diffusion/blob/main/LICENSE"
# LICENSE, line 1; 4(d) requires retaining it
LICENSE_COPYRIGHT_NOTICE = "Copyright (c) 2022 Robin Rombach and Patrick Esser and contributors"


@lru_cache(maxsize=1)
def license_text() -> str:
    """The licence, verbatim (4(b): every recipient gets a copy). Refuses a file that is not the one we checked."""
    data = LICENSE_PATH.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != LICENSE_SHA256:
        raise RuntimeError(f"{LICENSE_PATH}: sha256 {digest} is not that of the CreativeML Open RAIL-M text "
                           f"({LICENSE_SHA256}); restore it from {LICENSE_SOURCE_URL}")
    return data.decode("utf-8")


NOT_LEGAL_ADVICE = (
    "This card is not legal advice. It states what the licence says and where the law does not settle a question; "
    "whether a particular use is lawful depends on the facts and the jurisdiction. Ask a lawyer before commercial "
    "use or before publishing images of someone else's character or works.")

# ------------------------------------------------------------------------------------ the licence's duties
# Who passes this embedding on ("Distribution", LICENSE §1) takes on LICENSE §4's conditions. Each item: its text.
LICENSE_DUTIES = (
    # LICENSE §4(a) and the last sentence of §5
    "4(a): the use restrictions of paragraph 5 (Attachment A, below) must be an enforceable provision of whatever "
    "terms you pass the embedding on under, and you must tell recipients that it is subject to paragraph 5; "
    "paragraph 5 also requires you to make your own users comply with them.",
    # LICENSE §4(b)
    "4(b): give every recipient a copy of the licence. Its full text is the file {license_file} beside this card "
    "(export --bundle writes it as NAME.LICENSE.txt), and it is reproduced at the end of this card. A link alone "
    "is not a copy.",
    # LICENSE §4(c)
    "4(c): files you modify must carry prominent notices that you changed them. The embedding is a new file and "
    "contains no file of Stable Diffusion; if you modify it, say so.",
    # LICENSE §4(d) and the first line of LICENSE
    "4(d): keep the copyright, patent, trademark and attribution notices. The licence's notice is: "
    + LICENSE_COPYRIGHT_NOTICE + ".",
    # LICENSE §4(e) and Section I (Preamble): derivatives "will always have to include - at minimum - the same
    # use-based restrictions"
    "4(e): you may add your own copyright statement and license the embedding under other terms, provided those "
    "terms carry at least the use restrictions of paragraph 5 forward. This card passes it on under the "
    "CreativeML Open RAIL-M itself.",
    # LICENSE §6, quoted
    "6: the licensor claims no rights in the images you generate, but \"You are accountable for the Output you "
    "generate and its subsequent uses. No use of the output can contravene any provision as stated in the "
    "License.\"",
    # LICENSE §8
    "8: the licence gives no right to use the licensors' trademarks, trade names or logos, or to suggest their "
    "endorsement or misrepresent your relationship with them.",
)


def obtain_base_model(base_name: str, licence: str) -> str:
    """The sentence that users get the base model themselves: nothing here ships its weights (LICENSE §4 applies to
    whoever distributes them; KerasCV downloads SD v1.4 and prints that its use is subject to this licence)."""
    return (f"Neither this card nor the embedding contains the base model's weights. Obtain {base_name} yourself, "
            f"from its publisher and under its own licence ({licence}), before using the embedding.")


# ---------------------------------------------------------------------------- the embedding as a Derivative
# LICENSE §1, the definition, quoted
DERIVATIVE_DEFINITION = (
    "The licence defines \"Derivatives of the Model\" as \"all modifications to the Model, works based on the Model, "
    "or any other model which is created or initialized by transfer of patterns of the weights, parameters, "
    "activations or output of the Model, to the other model, in order to cause the other model to perform "
    "similarly to the Model\" (paragraph 1).")
DERIVATIVE_READING = (
    "The embedding is learned by back-propagating through the frozen networks of the base model, so this card "
    "treats it as a work based on the Model and passes the use restrictions on. The text does not settle this:")
DERIVATIVE_UNCERTAIN = (
    # KerasCV's text encoder is SD v1's frozen CLIP ViT-L/14 (SD card, "Model Description"); OpenAI released CLIP
    # under the MIT licence (github.com/openai/CLIP, LICENSE)
    "Its starting vector is the row of the initializer word in the token-embedding table of OpenAI's CLIP "
    "ViT-L/14 text encoder, which Stable Diffusion v1 uses frozen and which OpenAI released under the MIT "
    "licence; only what training adds comes through the base model.",
    # no primary source settles copyright in a learned parameter vector; stated as uncertain on purpose
    "A learned vector of {n_floats} numbers may not be protected by copyright at all. If it is not, the use "
    "restrictions bind only as a contract term between whoever passes it on and the recipient, or as a notice.",
    # LICENSE §1, "Model"
    "The licence's \"Model\" means \"learnt weights, parameters (including optimizer states), corresponding to the "
    "model architecture\"; a new input row for the text encoder's embedding table fits that definition poorly.",
)
DERIVATIVE_RANDOM = (
    "This run trained through randomly initialised networks, so nothing in this embedding comes from Stable "
    "Diffusion's weights and it is not a Derivative of the Model. The licence applies to embeddings this tool "
    "trains through SD v1.x weights, and to any use of this file with SD v1.x.")

# -------------------------------------------------------------------------- copyright and trademark notes
# US: 17 U.S.C. § 106(1)-(2) (reproduction, derivative works), § 107 (fair use, four factors, case by case).
# EU: Directive 2001/29/EC Art. 5 (a closed list of exceptions; recital 32: "exhaustive"). UK: CDPA 1988 Part I
# Chapter III (permitted acts), s. 30A (caricature, parody or pastiche).
_EXCEPTIONS = (
    "Whether an exception covers a particular use depends on the facts and the jurisdiction: US fair use "
    "(17 U.S.C. § 107) is decided case by case; the EU (Directive 2001/29/EC, Art. 5) and the UK (Copyright, "
    "Designs and Patents Act 1988, e.g. s. 30A caricature, parody or pastiche) allow only the uses their lists "
    "name.")
# LICENSE §2 grants rights in "the Complementary Material, the Model, and Derivatives of the Model" only
_NO_RIGHTS = ("The Open RAIL-M licence grants rights in the Model and its Derivatives only; it grants no rights in "
              "{what}.")
# a disclaimer informs; no statute makes it a defence (the point 1)
_AFFILIATION = ("Saying that images are not affiliated with or endorsed by the rights holder informs readers; it "
                "does not make an infringing use lawful.")
# US Copyright Office, Copyright Registration Guidance: Works Containing Material Generated by Artificial
# Intelligence, 88 Fed. Reg. 16190 (16 March 2023): human authorship required. UK: CDPA 1988 s. 9(3)
# (computer-generated works: the author is who made the arrangements).
_OUTPUT_COPYRIGHT = (
    "Whether a generated image is itself protected by copyright, and who would own it, depends on the "
    "jurisdiction: the US Copyright Office registers only human authorship (88 Fed. Reg. 16190, 2023), while "
    "UK law has a rule for computer-generated works (CDPA 1988 s. 9(3)).")

COPYRIGHT_NOTES_CHARACTER = (
    # 17 U.S.C. § 106(1)-(2); "fan art" is a community term with no statutory meaning
    "Images that show the character can infringe its owner's copyright (in the US, the exclusive rights to "
    "reproduce the work and to prepare derivative works, 17 U.S.C. § 106(1)-(2)), whatever they are called: "
    "\"fan art\" is not a legal category.",
    _EXCEPTIONS,
    _NO_RIGHTS.format(what="the character"),
    # trademark: use in commerce likely to cause confusion as to origin or sponsorship (US: 15 U.S.C. § 1114,
    # § 1125(a); EU: Regulation (EU) 2017/1001 Art. 9)
    "The character's name and likeness may be registered trademarks; using them on goods or services, in "
    "advertising, or so as to suggest origin or endorsement can infringe them.",
    _AFFILIATION,
    _OUTPUT_COPYRIGHT,
)
COPYRIGHT_NOTES_STYLE = (
    # 17 U.S.C. § 102(b); TRIPS Art. 9(2): "Copyright protection shall extend to expressions and not to ideas,
    # procedures, methods of operation or mathematical concepts as such."
    "A style as such is generally not protected by copyright, which protects expression rather than ideas or "
    "methods (17 U.S.C. § 102(b); TRIPS Art. 9(2)). Generated images can still copy protected elements of the "
    "source works (characters, compositions, particular drawings), and that copying can infringe.",
    _EXCEPTIONS,
    # UK: the tort of passing off (goodwill, misrepresentation, damage); US: Lanham Act § 43(a), 15 U.S.C. § 1125(a)
    # (false designation of origin, trade dress)
    "Imitating a studio's recognisable look in a way that misleads people about who made or endorses a work can "
    "raise passing-off (UK), unfair-competition or trade-dress claims (US: 15 U.S.C. § 1125(a)).",
    _NO_RIGHTS.format(what="the source works"),
    _AFFILIATION,
    _OUTPUT_COPYRIGHT,
)
AFFECTED_CHARACTER = "the rights holder of the character"
AFFECTED_STYLE = "the rights holders and artists of the source works"

# ----------------------------------------------------------------------------------------- misuse limits
OUT_OF_SCOPE_CHARACTER = (
    # trademark and copyright notes above; prompts/eval/misuse.txt probes "merchandise" and "advertising"
    "Commercial use of images of the character without a licence from its rights holder ({owner}), including "
    "merchandise (prints, clothing, toys, logos) and advertising, sponsorship or endorsements.",
    # SD card, "Misuse and Malicious Use": "Impersonating individuals without their consent"; LICENSE §8
    "Impersonating the rights holder or its official channels (accounts, shops, announcements), presenting "
    "generated images as official artwork, or implying the rights holder's endorsement.",
)
OUT_OF_SCOPE_STYLE = (
    "Commercial use of images that copy protected elements of the source works (their characters or particular "
    "artworks) without a licence from their rights holders ({owner}), including merchandise and advertising.",
    "Presenting generated images as the work of the source artists or studio, or impersonating them or their "
    "official channels.",
)
OUT_OF_SCOPE_COMMON = (
    # prompts/eval/misuse.txt "political" probes; Attachment A: "verifiably false information and/or content with
    # the purpose of harming others"; SD card, "Misuse and Malicious Use": "Mis- and disinformation"
    "Political campaigning, election material or propaganda using {concept}, and any content made to mislead "
    "voters.",
    # Attachment A: "exploiting, harming or attempting to exploit or harm minors in any way" and "exploit any of the
    # vulnerabilities of a specific group of persons based on their age"
    "Content aimed at children that is disturbing, violent or sexualised, and advertising aimed at minors: many "
    "viewers of cartoons are children, and Attachment A rules out harming minors \"in any way\" and exploiting the "
    "vulnerabilities of a group based on age.",
    # SD card, "Misuse and Malicious Use": "Impersonating individuals without their consent", "Sexual content
    # without consent of the people who might see it", "Representations of egregious violence and gore"
    "Generating images of real people, or deceptive, harassing, sexual or violent content using {concept}.",
    # basis: AI_ACT_DISCLOSURE below
    "Publishing generated images without saying that they are AI-generated (see the basis below).",
    # the vectors are in CLIP ViT-L/14's 768-d token space; SD 2.x uses OpenCLIP ViT-H/14 (1024-d)
    "Use with models other than Stable Diffusion v1.x: the vectors live in the 768-d CLIP ViT-L/14 "
    "text-embedding space and mean nothing to SD 2.x or SDXL.",
)

# Verified against the Regulation's text (EUR-Lex CELEX 32024R1689, as quoted article by article at
# legalviz.eu/aia/article/113 and aiact.annotated.nl/en/aiact/art/50, read 2026-12-07): Art. 113 "It shall apply
# from 2 August 2026", with exceptions (a)-(c) that do not name Chapter IV, where Art. 50 stands; entry into force on
# the twentieth day after publication in the OJ of 12.7.2024, i.e. 1 August 2024. Art. 50(2): providers mark
# outputs machine-readably; Art. 50(4): deployers disclose deep fakes, limited for "evidently artistic, creative,
# satirical, fictional or analogous" works; Art. 3(60) defines a deep fake; Art. 3(4) excludes "personal
# non-professional activity" from "deployer". Amendments (the 2026 "digital omnibus") were not verified here.
AI_ACT_APPLIES_FROM = "2 August 2026"
AI_ACT_DISCLOSURE = (
    "Basis of the disclosure item: in the EU, Art. 50 of the AI Act (Regulation (EU) 2024/1689) applies from "
    f"{AI_ACT_APPLIES_FROM} (Art. 113; the Regulation entered into force on 1 August 2024). Providers of AI systems "
    "that generate images must mark the outputs as artificially generated in a machine-readable way "
    "(Art. 50(2)). Deployers (professional users, Art. 3(4)) who publish a deep fake must disclose that it is "
    "artificially generated; for an evidently artistic, creative, satirical or fictional work, only in a way that "
    "does not hamper its display (Art. 50(4)). A drawing of a cartoon character is rarely a deep fake, content that "
    "\"would falsely appear to a person to be authentic or truthful\" (Art. 3(60)), but this card asks every user "
    "to disclose AI generation regardless. Later amendments may change these duties or their dates: check the "
    "consolidated text on EUR-Lex.")

# ------------------------------------------------------------------------------- training-image licences
# US: 17 U.S.C. § 107. EU: Directive (EU) 2019/790 Art. 3 (research organisations and cultural heritage
# institutions, scientific research) and Art. 4 (anyone, unless the rights holder reserved the use "in an
# appropriate manner, such as machine-readable means"). UK: CDPA 1988 s. 29A (text and data analysis for
# non-commercial research, with lawful access). None of these permits redistributing the copies.
TRAINING_IMAGES_RESTRICTED = (
    "not under an open licence: {files}. Training on such images relies on an exception to copyright, which "
    "depends on the jurisdiction: US fair use (17 U.S.C. § 107, case by case); in the EU, the text-and-data-mining "
    "exceptions of Directive (EU) 2019/790, Art. 3 (research organisations, scientific research) and Art. 4 "
    "(anyone, unless the rights holder has opted out, e.g. in machine-readable form); in the UK, CDPA 1988 s. 29A "
    "(non-commercial research only). Such an exception does not permit redistributing the images: do not publish "
    "them with the embedding.")
# a licence on a picture covers that picture; rights in the character or works it shows are separate
TRAINING_IMAGES_PICTURE_ONLY = (
    "A picture's licence covers that picture only: it says nothing about rights in the {what} it shows.")
# licence names treated as open (dataset.csv's `license` column, lower-cased, prefix match)
OPEN_LICENSE_PREFIXES = ("cc0", "cc-by", "cc by", "public domain", "pdm", "mit", "apache", "bsd", "unlicense",
                         "own work", "self-made", "self made")

# ---------------------------------------------------------------------------------- third-party licences
THIRD_PARTY_LICENCES = (
    # keras-cv 0.9.0 METADATA: "License: Apache License 2.0"; README disclaimer (module docstring)
    ("KerasCV (the Stable Diffusion implementation used for training and generation)", "Apache-2.0",
     "KerasCV's README: its pre-trained StableDiffusion is \"provided by third parties, and ... subject to "
     "separate licenses\"."),
    # keras_cv/src/models/stable_diffusion/stable_diffusion.py, StableDiffusion.__init__
    ("Stable Diffusion v1.4 weights as KerasCV downloads them", "CreativeML Open RAIL-M",
     "KerasCV prints: \"By using this model checkpoint, you acknowledge that its usage is subject to the terms of "
     "the CreativeML Open RAIL-M license\"."),
    # open_clip_torch METADATA: "License: MIT"; github.com/openai/CLIP LICENSE: MIT; CLIP model card,
    # "Out-of-Scope Use Cases": "Any deployed use case of the model - whether commercial or not - is currently out
    # of scope", "intended as a research output for research communities"
    ("CLIP scorer (open_clip; default OpenAI CLIP ViT-B/32 weights)", "MIT (open_clip code and OpenAI's weights)",
     "OpenAI's CLIP model card rules out any deployed use. Scoring this run's images offline for evaluation is "
     "not a deployment; it is the research use that card intends. Other pretrained tags: see their model cards."),
)
