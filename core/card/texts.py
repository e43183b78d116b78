"""The fixed texts of the model card: licence use restrictions, base-model and KerasCV limits, citations, snippets.

Nothing here depends on a run except the two code snippets (which take the token). Sections (`sections.py`) put
these texts into the card; changing a sentence of the card that never varies means editing it here.
"""

from __future__ import annotations

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

LICENSE_PREAMBLE = (
    "This embedding was trained through Stable Diffusion v1.4 and is treated here as a Derivative of the "
    "Model under its {license} licence, under which it is distributed. "
    "Paragraph 4 of the licence requires anyone who distributes the Model or its Derivatives to include "
    "the use-based restrictions of paragraph 5 (listed in its Attachment A, below) as an enforceable "
    "provision, to give every recipient a copy of the licence, and to mark modified files. Whoever "
    "redistributes this embedding must pass these restrictions on. You are responsible for the images "
    "you generate."
)
USE_RESTRICTIONS_INTRO = "You agree not to use the Model or Derivatives of the Model:"

OUT_OF_SCOPE_GENERAL = (  # after the licence line and the owner line, which depend on the run
    "Presenting generated images as official artwork of the character, or implying endorsement by its owner.",
    "Generating images of real people, or deceptive, harassing, sexual or violent content involving the character.",
    "Distributing generated images without disclosing that they are AI-generated.",
    "Use with models other than Stable Diffusion v1.x: the vectors live in the 768-d CLIP ViT-L/14 "
    "text-embedding space and mean nothing to SD 2.x or SDXL.",
)

COPYRIGHT_NOTES = (
    "Images of a copyrighted character are fan art: the character's copyright stays with its owner, and "
    "the Open RAIL-M licence of the model grants no rights in the character.",
    "The character's name and likeness may be registered trademarks; using them to sell goods or "
    "services, or in a way that suggests origin, can infringe them.",
    "This embedding and its images are not affiliated with, sponsored or endorsed by the owner.",
    "Whether a generated image can be protected by copyright, and who would own it, depends on the "
    "jurisdiction; many treat purely machine-generated images as unprotected.",
)

# From the Stable Diffusion v1.4 model card (BASE_MODEL_URL), "Limitations and Bias".
BASE_MODEL_LIMITS = (
    "It does not achieve perfect photorealism; faces and people in general may not be generated properly.",
    "It cannot render legible text.",
    "It struggles with compositional prompts (e.g. 'a red cube on top of a blue sphere').",
    "It was trained mainly on English captions (LAION-2B(en)) and works less well in other languages; "
    "white and Western cultures are often the default, and other communities are under-represented.",
    "Its training data (subsets of LAION-5B) contains adult, violent and otherwise harmful material, and "
    "was not deduplicated: some memorisation of duplicated training images has been observed.",
    "The autoencoder is lossy, so fine detail is approximated.",
)

KERASCV_AND_TI_LIMITS = (
    "KerasCV's StableDiffusion has no safety checker (NSFW filter) and adds no invisible watermark; outputs "
    "are not filtered or marked as AI-generated. Add both before exposing generation to others.",
    "A token learned from a handful of images also learns their backgrounds, poses and drawing quirks, and "
    "can dominate the rest of the prompt.",
    "The embedding only works with the text encoder it was trained for (SD v1.x, CLIP ViT-L/14).",
    "CLIP-based scores are proxies: CLIP has its own biases and can reward copies of the training images.",
)

RECOMMENDATIONS = (
    "Disclose that images are AI-generated, and do not present them as the owner's official artwork.",
    "Keep the use restrictions of the licence with every copy of the embedding.",
    "Run a safety checker and a watermark when generating for others.",
    "Check the success and failure grids and the ethics checklist before publishing.",
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
    "Lacoste, A., Luccioni, A., Schmidt, V., & Dandres, T. (2019). Quantifying the carbon emissions of machine "
    "learning. arXiv:1910.09700.",
)


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
