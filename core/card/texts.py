"""The fixed texts of the model card: licence use restrictions, base-model and KerasCV limits, citations, snippets.

Nothing here depends on a run except the code snippets (which take the token) and the embedding's own citation.
Sections (`sections/`) put these texts into the card; changing a sentence of the card that never varies means
editing it here. The legal texts (licence duties, copyright, misuse limits, AI disclosure) are in legal.py, each with
its source. Quotations of the SD v1 model card are from CompVis/stable-diffusion `Stable_Diffusion_v1_Model_Card.md`
at commit 21f890f9 (the text of huggingface.co/CompVis/stable-diffusion-v1-4's README).
"""

from __future__ import annotations

import re

BASE_MODEL = "CompVis/stable-diffusion-v1-4"
BASE_MODEL_URL = "https://huggingface.co/CompVis/stable-diffusion-v1-4"
LICENSE_ID = "creativeml-openrail-m"
LICENSE_NAME = "CreativeML Open RAIL-M"
LICENSE_URL = "https://huggingface.co/spaces/CompVis/stable-diffusion-license"
LIBRARY_NAME = "keras-cv"
PAPER_TITLE = "Gal et al. 2022, An Image is Worth One Word"
PAPER_URL = "https://arxiv.org/abs/2208.01618"
ML_CO2_CALCULATOR_URL = "https://mlco2.github.io/impact#compute"
LACOSTE_URL = "https://arxiv.org/abs/1910.09700"

# Attachment A ("Use Restrictions") of the CreativeML Open RAIL-M licence, dated August 22, 2022, reproduced
# verbatim: paragraph 5 and Attachment A require derivatives to carry these restrictions.
LICENSE_USE_RESTRICTIONS = (
    "In any way that violates any applicable national, federal, state, local or international law or regulation;",
    "For the purpose of exploiting, harming or attempting to exploit or harm minors in any way;",
    "To generate or disseminate verifiably false information and/or content with the purpose of harming others;",
    "To generate or disseminate personal identifiable information that can be used to harm an individual;",
    "To defame, disparage or otherwise harass others;",
    "For fully automated decision making that adversely impacts an individual’s legal rights or otherwise "
    "creates or modifies a binding, enforceable obligation;",
    "For any use intended to or which has the effect of discriminating against or harming individuals or groups "
    "based on online or offline social behavior or known or predicted personal or personality characteristics;",
    "To exploit any of the vulnerabilities of a specific group of persons based on their age, social, physical or "
    "mental characteristics, in order to materially distort the behavior of a person pertaining to that group in "
    "a manner that causes or is likely to cause that person or another person physical or psychological harm;",
    "For any use intended to or which has the effect of discriminating against individuals or groups based on "
    "legally protected characteristics or categories;",
    "To provide medical advice and medical results interpretation;",
    "To generate or disseminate information for the purpose to be used for administration of justice, law "
    "enforcement, immigration or asylum processes, such as predicting an individual will commit fraud/crime "
    "commitment (e.g. by text profiling, drawing causal relationships between assertions made in documents, "
    "indiscriminate and arbitrarily-targeted use).",
)

USE_RESTRICTIONS_INTRO = "You agree not to use the Model or Derivatives of the Model:"

# From the SD v1 model card, "Limitations" and "Bias", in its words where quoted (issue 22 point 9: nothing added)
BASE_MODEL_LIMITS = (
    "It does not achieve perfect photorealism; faces and people in general may not be generated properly.",
    "It cannot render legible text.",
    "It does not perform well on more difficult tasks which involve compositionality, such as rendering an image "
    "corresponding to \"A red cube on top of a blue sphere\".",
    "It was trained mainly with English captions (LAION-2B(en)) and will not work as well in other languages; "
    "white and western cultures are often set as the default, and texts and images from communities and cultures "
    "that use other languages are likely to be insufficiently accounted for.",
    "It was trained on LAION-5B, which \"contains adult material and is not fit for product use without additional "
    "safety mechanisms and considerations\".",
    "No additional measures were used to deduplicate the dataset, and some degree of memorization is observed for "
    "images that are duplicated in the training data.",
    "The autoencoding part of the model is lossy.",
)
# SD v1 model card, "Bias", quoted
VIEWER_DISCRETION = ("\"Stable Diffusion v1 mirrors and exacerbates biases to such a degree that viewer discretion "
                     "must be advised irrespective of the input or its intent.\"")

KERASCV_AND_TI_LIMITS = (
    "KerasCV's StableDiffusion has no safety checker (NSFW filter) and adds no invisible watermark; outputs "
    "are not filtered or marked as AI-generated. Add both before exposing generation to others.",
    "A token learned from a handful of images also learns their backgrounds, poses and drawing quirks, and "
    "can dominate the rest of the prompt.",
    "The embedding only works with the text encoder it was trained for (SD v1.x, CLIP ViT-L/14).",
    "CLIP-based scores are proxies: CLIP has its own biases and can reward copies of the training images.",
)

RECOMMENDATIONS = (
    "Disclose that images are AI-generated (the basis is under Out-of-Scope Use), and do not present them as the "
    "rights holder's official artwork.",
    "Keep the use restrictions and a copy of the licence (the LICENSE file) with every copy of the embedding.",
    "Run a safety checker and a watermark when generating for others.",
    "Check the success and failure grids, the measured risks and the ethics checklist before publishing, and keep "
    "misuse-probe images out of anything you publish.",
)

# What each measured risk can and cannot show (issue 22, point 5): the copy rate measures memorisation only
MEASURES_CAN_AND_CANNOT = (
    "The copy rate finds generated images that are near-copies of a training image (memorisation). It cannot show "
    "that an image is free of infringement: a new pose of a character copies no training image and can still "
    "infringe.",
    "The misuse transfer measures how often the learned concept comes through (CLIP-I above the run's likeness "
    "level) when prompts put it on merchandise, in advertising, politics or violence, or beside other characters. "
    "It shows that the embedding can be used that way; it cannot say whether a given use is lawful, and CLIP "
    "likeness is only a proxy.",
    "Neither is a filter, and neither replaces a person looking at what is published.",
)

CLIP_I_DEFINITION = ("mean cosine similarity between the CLIP image embeddings of a generated image and of the "
                     "training images (likeness to the concept).")
CLIP_T_DEFINITION = ("cosine similarity between the generated image and the prompt with the token removed "
                     "(does the image still follow the prompt).")

CITATIONS_BIBTEX = """@misc{gal2022textual,
  title         = {An Image is Worth One Word: Personalizing Text-to-Image Generation using Textual Inversion},
  author        = {Gal, Rinon and Alaluf, Yuval and Atzmon, Yuval and Patashnik, Or and Bermano, Amit H. and
                   Chechik, Gal and Cohen-Or, Daniel},
  year          = {2022},
  eprint        = {2208.01618},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}

@inproceedings{rombach2022high,
  title     = {High-Resolution Image Synthesis with Latent Diffusion Models},
  author    = {Rombach, Robin and Blattmann, Andreas and Lorenz, Dominik and Esser, Patrick and Ommer, Bj{\\"o}rn},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {10684--10695},
  year      = {2022}
}

@inproceedings{mitchell2019model,
  title     = {Model Cards for Model Reporting},
  author    = {Mitchell, Margaret and Wu, Simone and Zaldivar, Andrew and Barnes, Parker and Vasserman, Lucy and
               Hutchinson, Ben and Spitzer, Elena and Raji, Inioluwa Deborah and Gebru, Timnit},
  booktitle = {Proceedings of the Conference on Fairness, Accountability, and Transparency (FAT* '19)},
  pages     = {220--229},
  year      = {2019},
  doi       = {10.1145/3287560.3287596}
}

@inproceedings{radford2021learning,
  title     = {Learning Transferable Visual Models From Natural Language Supervision},
  author    = {Radford, Alec and Kim, Jong Wook and Hallacy, Chris and Ramesh, Aditya and Goh, Gabriel and
               Agarwal, Sandhini and Sastry, Girish and Askell, Amanda and Mishkin, Pamela and Clark, Jack and
               Krueger, Gretchen and Sutskever, Ilya},
  booktitle = {Proceedings of the 38th International Conference on Machine Learning (ICML)},
  series    = {Proceedings of Machine Learning Research},
  volume    = {139},
  pages     = {8748--8763},
  year      = {2021}
}

@software{ilharco_gabriel_2021_5143773,
  author    = {Ilharco, Gabriel and Wortsman, Mitchell and Wightman, Ross and Gordon, Cade and Carlini, Nicholas and
               Taori, Rohan and Dave, Achal and Shankar, Vaishaal and Namkoong, Hongseok and Miller, John and
               Hajishirzi, Hannaneh and Farhadi, Ali and Schmidt, Ludwig},
  title     = {OpenCLIP},
  year      = {2021},
  publisher = {Zenodo},
  doi       = {10.5281/zenodo.5143773}
}

@misc{wood2022kerascv,
  title        = {KerasCV},
  author       = {Wood, Luke and Tan, Zhenyu and Stenbit, Ian and Bischof, Jonathan and Zhu, Scott and
                  Chollet, Fran\\c{c}ois and Sreepathihalli, Divyashree and Sampath, Ramesh and others},
  year         = {2022},
  howpublished = {\\url{https://github.com/keras-team/keras-cv}}
}

@article{lacoste2019quantifying,
  title   = {Quantifying the Carbon Emissions of Machine Learning},
  author  = {Lacoste, Alexandre and Luccioni, Alexandra and Schmidt, Victor and Dandres, Thomas},
  journal = {arXiv preprint arXiv:1910.09700},
  year    = {2019}
}"""

CITATIONS_APA = (
    "Gal, R., Alaluf, Y., Atzmon, Y., Patashnik, O., Bermano, A. H., Chechik, G., & Cohen-Or, D. (2022). An image "
    "is worth one word: Personalizing text-to-image generation using textual inversion. arXiv:2208.01618.",
    "Rombach, R., Blattmann, A., Lorenz, D., Esser, P., & Ommer, B. (2022). High-resolution image synthesis with "
    "latent diffusion models. In Proceedings of CVPR 2022 (pp. 10684-10695).",
    "Mitchell, M., Wu, S., Zaldivar, A., Barnes, P., Vasserman, L., Hutchinson, B., Spitzer, E., Raji, I. D., & "
    "Gebru, T. (2019). Model cards for model reporting. In Proceedings of FAT* '19 (pp. 220-229).",
    "Radford, A., Kim, J. W., Hallacy, C., Ramesh, A., Goh, G., Agarwal, S., Sastry, G., Askell, A., Mishkin, P., "
    "Clark, J., Krueger, G., & Sutskever, I. (2021). Learning transferable visual models from natural language "
    "supervision. In Proceedings of ICML 2021, PMLR 139 (pp. 8748-8763).",
    "Ilharco, G., Wortsman, M., Wightman, R., Gordon, C., Carlini, N., Taori, R., Dave, A., Shankar, V., Namkoong, H., "
    "Miller, J., Hajishirzi, H., Farhadi, A., & Schmidt, L. (2021). OpenCLIP. Zenodo. doi:10.5281/zenodo.5143773.",
    "Wood, L., Tan, Z., Stenbit, I., Bischof, J., Zhu, S., Chollet, F., Sreepathihalli, D., Sampath, R., et al. "
    "(2022). KerasCV. https://github.com/keras-team/keras-cv.",
    "Lacoste, A., Luccioni, A., Schmidt, V., & Dandres, T. (2019). Quantifying the carbon emissions of machine "
    "learning. arXiv:1910.09700.",
)


def _bibtex_value(text: str) -> str:
    """A user string inside BibTeX braces: unbalanced braces and backslashes removed."""
    return " ".join(str(text).replace("{", "").replace("}", "").replace("\\", "").split())


def embedding_bibtex(run_name: str, token: str, authors: str, year: str, url: str | None) -> str:
    """The citation of the embedding itself (an @misc entry; authors and url as the card's overrides state them)."""
    key = re.sub(r"[^A-Za-z0-9]+", "", run_name) or "embedding"
    fields = [("title", f"{{Textual-inversion embedding {_bibtex_value(token)} (run {_bibtex_value(run_name)})}}"),
              ("author", _bibtex_value(authors)), ("year", year),
              ("note", "Stable Diffusion v1 textual-inversion embedding; model card made by tomcat-ti")]
    if url:
        fields.append(("howpublished", f"\\url{{{_bibtex_value(url)}}}"))
    body = ",\n".join(f"  {name:<12} = {{{value}}}" for name, value in fields)
    return f"@misc{{{key}{year},\n{body}\n}}"


def kerascv_snippet(token: str, n_vectors: int) -> str:
    tokens = [token] + [f"{token}_{i}" for i in range(1, n_vectors)]
    return f'''import numpy as np
import keras_cv
from safetensors.numpy import load_file

TOKEN = {token!r}
vectors = load_file("learned_embeds.safetensors")[TOKEN]          # float32[{n_vectors}, 768]
words = {tokens!r}                                                   # one tokenizer entry per vector

sd = keras_cv.models.StableDiffusion(img_width=512, img_height=512)
for w in words:
    sd.tokenizer.add_tokens(w)
old = sd.text_encoder.layers[2]                                      # token + position embedding layer
new_table = np.concatenate([old.token_embedding.get_weights()[0], vectors], axis=0)
encoder = keras_cv.models.stable_diffusion.TextEncoder(
    keras_cv.models.stable_diffusion.stable_diffusion.MAX_PROMPT_LENGTH,
    vocab_size=new_table.shape[0], download_weights=False)
for i, layer in enumerate(sd.text_encoder.layers):
    if i != 2:
        encoder.layers[i].set_weights(layer.get_weights())
encoder.layers[2].token_embedding.set_weights([new_table])
encoder.layers[2].position_embedding.set_weights(old.position_embedding.get_weights())
sd._text_encoder = encoder

prompt = "a drawing of {{}} in the snow".format(" ".join(words))
images = sd.text_to_image(prompt, batch_size=2, seed=0)'''


def diffusers_snippet(token: str) -> str:
    return f'''import torch
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("{BASE_MODEL}", torch_dtype=torch.float16).to("cuda")
pipe.load_textual_inversion("learned_embeds.safetensors", token={token!r})
image = pipe("a drawing of " + {token!r} + " in the snow", num_inference_steps=50).images[0]
image.save("out.png")'''
