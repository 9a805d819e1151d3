"""A built-in, deterministic radiology-like dataset: images, VQA-RAD-style QA and ROCO-style captions.

Each image shows one body region (head, chest, abdomen) in one modality (CT, MRI, X-ray, each with its
own intensities and texture) with zero to three round lesions of two sizes on the patient's left or
right (radiological convention: the patient's left is on the image's right). Questions ask about
presence, count, side, size, modality and region, closed (yes/no) and open, so a model that looks at
the image beats the majority answer by a wide margin.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from data_prep.records import VQARecord
from data_prep.source import RawDataset, option, register_dataset

SIZE = 256
MODALITIES = ("CT", "MRI", "X-Ray")
REGIONS = ("head", "chest", "abdomen")
COUNT_WORDS = ("no", "one", "two", "three")
# background, body, dark organ, bright structure, lesion, noise sigma, blur radius
_LOOK = {
    "CT": (0.02, 0.45, 0.12, 0.95, 0.80, 0.030, 0.0),
    "MRI": (0.06, 0.30, 0.55, 0.15, 0.92, 0.015, 1.5),
    "X-Ray": (0.10, 0.62, 0.28, 0.90, 0.95, 0.050, 2.5),
}


@dataclass(frozen=True)
class Lesion:
    side: str  # patient's "left" (image right) or "right"
    large: bool
    cx: float
    cy: float
    radius: float


@dataclass(frozen=True)
class Scene:
    image_id: str
    modality: str
    region: str
    lesions: tuple[Lesion, ...]
    split: str


def _ellipse(yy: np.ndarray, xx: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _body(region: str) -> tuple[float, float]:
    return {"head": (92.0, 100.0), "chest": (118.0, 88.0), "abdomen": (108.0, 84.0)}[region]


def draw(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Render a scene as a uint8 ``[SIZE, SIZE]`` grayscale image."""
    background, body, dark, bright, lesion_value, sigma, blur = _LOOK[scene.modality]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    c = SIZE / 2
    rx, ry = _body(scene.region)
    image = np.full((SIZE, SIZE), background, np.float32)
    image[_ellipse(yy, xx, c, c, rx, ry)] = body
    if scene.region == "head":
        skull = _ellipse(yy, xx, c, c, rx, ry) & ~_ellipse(yy, xx, c, c, rx - 8, ry - 8)
        image[skull] = bright
        image[_ellipse(yy, xx, c, c + 5, 20, 30)] = dark  # ventricles
    elif scene.region == "chest":
        for dx in (-48, 48):
            image[_ellipse(yy, xx, c + dx, c - 4, 36, 58)] = dark  # lungs
        image[_ellipse(yy, xx, c, c + 45, 16, 16)] = bright  # spine
        image[_ellipse(yy, xx, c + 12, c + 5, 26, 30)] = (body + bright) / 2  # heart
    else:
        image[_ellipse(yy, xx, c - 40, c - 15, 45, 35)] = (body + dark) / 2  # liver (patient's right)
        for dx in (-55, 55):
            image[_ellipse(yy, xx, c + dx, c + 35, 13, 20)] = dark  # kidneys
        image[_ellipse(yy, xx, c, c + 50, 14, 14)] = bright  # spine
    if scene.modality == "X-Ray":
        image *= np.linspace(0.85, 1.1, SIZE, dtype=np.float32)[:, None]  # projection falloff
    for lesion in scene.lesions:
        image[_ellipse(yy, xx, lesion.cx, lesion.cy, lesion.radius, lesion.radius)] = lesion_value
    picture = Image.fromarray(np.clip(image * 255, 0, 255).astype(np.uint8))
    if blur:
        picture = picture.filter(ImageFilter.GaussianBlur(blur))
    noisy = np.asarray(picture, np.float32) / 255 + rng.normal(0, sigma, (SIZE, SIZE)).astype(np.float32)
    return np.clip(noisy * 255, 0, 255).astype(np.uint8)


def _place_lesions(rng: np.random.Generator, region: str) -> tuple[Lesion, ...]:
    count = int(rng.choice(4, p=[0.3, 0.3, 0.25, 0.15]))
    rx, ry = _body(region)
    lesions: list[Lesion] = []
    one_side = rng.random() < 0.7
    side_choice = str(rng.choice(["left", "right"]))
    while len(lesions) < count:
        side = side_choice if one_side else str(rng.choice(["left", "right"]))
        large = bool(rng.random() < 0.45)
        radius = float(rng.uniform(15, 21) if large else rng.uniform(6, 9))
        # patient's left is on the image's right
        sign = 1 if side == "left" else -1
        cx = SIZE / 2 + sign * float(rng.uniform(25, rx - radius - 12))
        cy = SIZE / 2 + float(rng.uniform(-(ry - radius - 15), ry - radius - 15))
        if all((cx - o.cx) ** 2 + (cy - o.cy) ** 2 > (radius + o.radius + 4) ** 2 for o in lesions):
            lesions.append(Lesion(side, large, cx, cy, radius))
    return tuple(lesions)


def _questions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """(question, answer, answer type, question type) about one scene."""
    n = len(scene.lesions)
    sides = sorted({l.side for l in scene.lesions})
    modality_name = {"CT": "ct", "MRI": "mri", "X-Ray": "x-ray"}[scene.modality]
    asked_modality = str(rng.choice(MODALITIES))
    asked_region = str(rng.choice(REGIONS))
    yes_no = lambda flag: "yes" if flag else "no"  # noqa: E731
    qa = [
        (str(rng.choice(["Is there a lesion in this image?", "Are there any abnormal masses?",
                         "Is a focal lesion present?"])), yes_no(n > 0), "CLOSED", "PRES"),
        (str(rng.choice(["How many lesions are there?", "How many masses are seen?"])), str(n), "OPEN", "COUNT"),
        (str(rng.choice(["What imaging modality is this?", "How was this image taken?",
                         "What type of imaging is shown?"])), modality_name, "OPEN", "MODALITY"),
        (f"Is this {'an' if asked_modality != 'CT' else 'a'} {asked_modality} image?",
         yes_no(asked_modality == scene.modality), "CLOSED", "MODALITY"),
        (str(rng.choice(["What part of the body is shown?", "Which region is imaged?"])), scene.region, "OPEN", "ORGAN"),
        (f"Is this an image of the {asked_region}?", yes_no(asked_region == scene.region), "CLOSED", "ORGAN"),
    ]
    if n:
        asked_side = str(rng.choice(["left", "right"]))
        qa += [
            ("Which side are the lesions on?" if n > 1 else "Which side is the lesion on?",
             "both" if len(sides) == 2 else sides[0], "OPEN", "POS"),
            (f"Is there a lesion on the {asked_side} side?", yes_no(asked_side in sides), "CLOSED", "POS"),
            ("Is the largest lesion large?" if n > 1 else "Is the lesion large?",
             yes_no(any(l.large for l in scene.lesions)), "CLOSED", "SIZE"),
            ("What size is the largest lesion?", "large" if any(l.large for l in scene.lesions) else "small",
             "OPEN", "SIZE"),
        ]
    keep = rng.permutation(len(qa))[: max(4, len(qa) - 2)]
    return [qa[i] for i in sorted(keep)]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A ROCO-style caption of the scene."""
    view = str(rng.choice(["Axial", "Coronal"])) if scene.modality != "X-Ray" else str(rng.choice(["Frontal", "AP"]))
    modality = {"CT": "computed tomography", "MRI": "magnetic resonance image", "X-Ray": "radiograph"}[scene.modality]
    n = len(scene.lesions)
    if not n:
        return f"{view} {modality} of the {scene.region} with no focal lesion."
    sides = {l.side for l in scene.lesions}
    where = "both sides" if len(sides) == 2 else f"the {next(iter(sides))} side"
    size = "large" if any(l.large for l in scene.lesions) else "small"
    noun = "lesion" if n == 1 else "lesions"
    return f"{view} {modality} of the {scene.region} showing {COUNT_WORDS[n]} {size} {noun} on {where}."


def generate(num_images: int = 240, seed: int = 0, test_fraction: float = 0.2) -> RawDataset:
    """The synthetic dataset: ``num_images`` scenes, train/test split by image (val is held out later)."""
    rng = np.random.default_rng(seed)
    records, captions, pixels = [], {}, {}
    n_test = round(test_fraction * num_images)
    for index in range(num_images):
        image_id = f"synth_{index:05d}.png"
        modality, region = str(rng.choice(MODALITIES)), str(rng.choice(REGIONS))
        region_rng = np.random.default_rng([seed, index])
        scene = Scene(image_id, modality, region, _place_lesions(region_rng, region),
                      "test" if index >= num_images - n_test else "train")
        pixels[image_id] = draw(scene, region_rng)
        captions[image_id] = caption(scene, region_rng)
        for question, answer, answer_type, question_type in _questions(scene, region_rng):
            records.append(VQARecord(
                qid=str(len(records)), image_id=image_id, question=question, answer=answer, answer_type=answer_type,
                question_type=question_type, split=scene.split, phrase_type="freeform", organ=scene.region.upper(),
                modality=scene.modality, raw_answer_type=answer_type))
    return RawDataset("synthetic", records, lambda image_id: Image.fromarray(pixels[image_id]),
                      source=f"built-in synthetic (images={num_images}, seed={seed})", captions=captions)


@dataclass(frozen=True)
class SyntheticOptions:
    images: int = option(240, "number of images (a fifth of them are test images)", aliases=("--synthetic-images",))
    seed: int = option(0, "generator seed")


@register_dataset("synthetic", SyntheticOptions)
def generate_from(options: SyntheticOptions, source: Path | None) -> RawDataset:
    """The built-in dataset needs no ``--source``."""
    return generate(options.images, options.seed)


def write_caption_set(raw: RawDataset, image_ids: list[str], out: Path, val_fraction: float = 0.1) -> None:
    """Images and captions in the ROCO layout: ``<split>/radiology/{captions.txt,dlinks.txt,images/}``."""
    assert raw.captions is not None
    test_images = {r.image_id for r in raw.records if r.split == "test"}
    train_images = [i for i in image_ids if i not in test_images]
    n_val = round(val_fraction * len(train_images))
    splits = {"train": train_images[n_val:], "validation": train_images[:n_val],
              "test": [i for i in image_ids if i in test_images]}
    for split, ids in splits.items():
        folder = out / split / "radiology"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        with (folder / "captions.txt").open("w") as caps, (folder / "dlinks.txt").open("w") as links:
            for image_id in ids:
                roco_id = f"SYNTH_{Path(image_id).stem.split('_')[1]}"
                caps.write(f"{roco_id}\t {raw.captions[image_id]}\n")
                links.write(f"{roco_id}\tbuilt-in synthetic\t{image_id}\n")
                raw.open_image(image_id).save(folder / "images" / image_id)
