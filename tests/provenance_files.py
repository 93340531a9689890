"""Real files with provenance, written by the tests: C2PA-signed with a chain made here, XMP, generator chunks, EXIF.

Not fixtures (conftest wraps what it needs). Certificates are made with ``cryptography``
to the C2PA profile: an ES256 leaf with digitalSignature, emailProtection EKU,
subject/authority key ids, issued by a CA that the test may pass as a trust anchor.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A smooth gradient plus noise: compresses like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=-1) * 255
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


# --------------------------------------------------------------------------- certificates


@dataclass
class Chain:
    certs_pem: str  # leaf then CA
    key_pem: str
    anchor_pem: str  # the CA: pass it as a trust anchor to make the signer "verified"


def make_chain(org: str = "Test Generator Inc") -> Chain:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )

    def usage(signature: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(signature, False, False, False, False, ca, ca, False, False)

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"{org} Root CA")

    def builder(subject, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(False, True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder(name(f"{org} Signer"), key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Chain(pem(leaf) + pem(ca), key_pem, pem(ca))


# --------------------------------------------------------------------------- C2PA


def c2pa_sign(
    data: bytes,
    mime: str,
    chain: Chain,
    source_type: str = TRAINED,
    generator: str = "ChatGPT",
    remote_url: str | None = None,
    actions: list[dict] | None = None,
    ingredients: tuple = (),
) -> bytes:
    """``data`` with an embedded C2PA manifest (or, with ``remote_url``, only a pointer to one), signed by ``chain``.

    ``actions``: None gives one ``c2pa.created`` with ``source_type`` by ``generator``; ``[]`` gives no actions
    assertion at all (as ChatGPT's active manifest has). ``ingredients``: ``(bytes, mime, relationship)`` tuples,
    each ingredient's own manifest carried into the store. The SDK's check after signing is off, so the
    structures real generators write (which that check calls malformed) can be made here.
    """
    import c2pa

    if actions is None:
        actions = [{"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": {"name": generator}}]
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}] if actions else [],
    }
    context = c2pa.Context.from_dict(
        {
            "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_after_sign": False},
            "builder": {"thumbnail": {"enabled": False}},
        }
    )
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.certs_pem.encode(), chain.key_pem.encode(), None)
    )
    output = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        for number, (ingredient, ingredient_mime, relationship) in enumerate(ingredients):
            info = {"title": f"ingredient-{number}", "relationship": relationship}
            builder.add_ingredient(info, ingredient_mime, io.BytesIO(ingredient))
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        builder.sign(signer, mime, io.BytesIO(data), output)
    return output.getvalue()


def openai_structure(data: bytes, mime: str, chain: Chain, source_type: str = TRAINED) -> bytes:
    """ChatGPT's layout: an active manifest with no actions whose one componentOf ingredient was created by GPT-4o."""
    actions = [
        {"action": "c2pa.created", "softwareAgent": {"name": "GPT-4o"}, "digitalSourceType": source_type},
        {"action": "c2pa.converted", "softwareAgent": {"name": "OpenAI API"}},
    ]
    inner = c2pa_sign(data, mime, chain, generator="ChatGPT", actions=actions)
    return c2pa_sign(data, mime, chain, generator="ChatGPT", actions=[], ingredients=[(inner, mime, "componentOf")])


def edited_capture(chain: Chain, edits: tuple[str, ...] = ("c2pa.color_adjustments",), source_type: str = CAPTURE) -> bytes:
    """A camera capture (its own manifest), then edited in a photo editor without generative tools: parentOf chain."""
    original = encode(photo(seed=3), "JPEG", quality=92)
    capture = c2pa_sign(
        original,
        "image/jpeg",
        chain,
        generator="Camera App",
        actions=[{"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": {"name": "Camera App"}}],
    )
    edited = encode(Image.fromarray(np.clip(np.asarray(photo(seed=3), np.int16) + 12, 0, 255).astype(np.uint8)), "JPEG")
    actions = [{"action": "c2pa.opened"}] + [{"action": a, "softwareAgent": {"name": "Adobe Lightroom"}} for a in edits]
    return c2pa_sign(
        edited, "image/jpeg", chain, generator="Adobe Lightroom", actions=actions,
        ingredients=[(capture, "image/jpeg", "parentOf")],
    )


def deep_chain(chain: Chain, links: int, seed: int = 0) -> bytes:
    """A PNG whose manifest has a parentOf ingredient, whose manifest has one, ... ``links`` manifests in all.

    The first link says created by a generator (trainedAlgorithmicMedia); every later one says edited.
    """
    data = encode(photo(96, 64, seed=seed), "PNG")
    signed = c2pa_sign(data, "image/png", chain, generator="Deep Generator")
    for _ in range(links - 1):
        signed = c2pa_sign(
            data, "image/png", chain, generator="Deep Editor",
            actions=[{"action": "c2pa.opened"}, {"action": "c2pa.edited", "softwareAgent": {"name": "Deep Editor"}}],
            ingredients=[(signed, "image/png", "parentOf")],
        )
    return signed


def flip_pixel_data(png: bytes) -> bytes:
    """Change compressed pixel data inside the first IDAT chunk (CRC not fixed: Pillow is told to accept it)."""
    at = png.index(b"IDAT") + 4 + 64
    edited = bytearray(png)
    edited[at] ^= 0xFF
    return bytes(edited)


def edit_pixels_keep_manifest(signed_jpeg: bytes) -> bytes:
    """Re-encode the pixels (a visible edit) and splice the original APP11 C2PA segments back in."""
    segments, pos = [], 2
    while pos < len(signed_jpeg) and signed_jpeg[pos] == 0xFF and signed_jpeg[pos + 1] != 0xDA:
        length = int.from_bytes(signed_jpeg[pos + 2 : pos + 4], "big")
        if signed_jpeg[pos + 1] == 0xEB:  # APP11: JUMBF / C2PA
            segments.append(signed_jpeg[pos : pos + 2 + length])
        pos += 2 + length
    image = Image.open(io.BytesIO(signed_jpeg)).convert("RGB")
    image.paste((255, 0, 0), (10, 10, 60, 60))
    plain = encode(image, "JPEG", quality=90)
    return plain[:2] + b"".join(segments) + plain[2:]


# --------------------------------------------------------------------------- XMP, text chunks, EXIF


def xmp_packet(source_type: str = TRAINED, padding: int = 0, creator_tool: str | None = None) -> bytes:
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/"{tool} Iptc4xmpExt:DigitalSourceType="{source_type}"/>'
        f'</rdf:RDF></x:xmpmeta>{" " * padding}<?xpacket end="w"?>'
    ).encode("utf-8")


def png_with_text(chunks: dict[str, str], image: Image.Image | None = None, xmp: bytes | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    if xmp is not None:
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
    return encode(image or photo(), "PNG", pnginfo=info)


def jpeg_with_exif(
    tags: dict[int, object],
    image: Image.Image | None = None,
    exif_ifd: dict[int, object] | None = None,
    xmp: bytes | None = None,
) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    if exif_ifd:
        ifd = exif.get_ifd(0x8769)
        ifd.update(exif_ifd)
    kwargs = {"xmp": xmp} if xmp is not None else {}
    return encode(image or photo(), "JPEG", quality=90, exif=exif, **kwargs)


A1111_PARAMETERS = (
    "a lighthouse at dusk, oil painting\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, Model: v1-5"
)
COMFY_PROMPT = (
    '{"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}}, '
    '"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}}}'
)
MIDJOURNEY_DESCRIPTION = "a cat astronaut --ar 3:2 --v 6.1 Job ID: 3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"


# --------------------------------------------------------------------------- bad C2PA input (fuzz corpus)


def read_store(data: bytes, mime: str) -> dict:
    """The manifest store as c2pa-python returns it (offline, no trust anchors): real input for the chain walker."""
    import json

    import c2pa

    context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
        return json.loads(reader.json())


def replace_png_chunk_payload(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """``png`` with the first ``kind`` chunk's payload replaced (length and CRC recomputed)."""
    import zlib

    at = png.index(kind)
    length = int.from_bytes(png[at - 4 : at], "big")
    chunk = kind + payload
    return png[: at - 4] + len(payload).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big") + png[at + 4 + length + 4 :]


def bad_c2pa_files(chain: Chain) -> dict[str, tuple[bytes, str]]:
    """Hostile or broken C2PA files, name -> (bytes, mime): each must give a clear item in bounded time."""
    import struct

    png = encode(photo(96, 64, seed=7), "PNG")
    signed = c2pa_sign(png, "image/png", chain)
    at = signed.index(b"caBX")
    payload = signed[at + 4 : at + 4 + int.from_bytes(signed[at - 4 : at], "big")]
    inner = c2pa_sign(encode(photo(seed=8), "JPEG", quality=90), "image/jpeg", chain)
    failing = c2pa_sign(
        encode(photo(seed=9), "JPEG"), "image/jpeg", chain, actions=[],
        ingredients=[(edit_pixels_keep_manifest(inner), "image/jpeg", "componentOf")],
    )
    pad = 20_000_000
    return {
        "deep_chain_12.png": (deep_chain(chain, 12), "image/png"),
        "failing_ingredient.jpg": (failing, "image/jpeg"),
        "oversized_jumbf_box.png": (
            replace_png_chunk_payload(signed, b"caBX", struct.pack(">I", len(payload) + pad) + payload[4:] + bytes(pad)),
            "image/png",
        ),
        "huge_xlbox.png": (
            replace_png_chunk_payload(signed, b"caBX", struct.pack(">I", 1) + payload[4:8] + struct.pack(">Q", 1 << 62) + payload[8:]),
            "image/png",
        ),
        "huge_lbox.png": (replace_png_chunk_payload(signed, b"caBX", b"\xff\xff\xff\xf0" + payload[4:]), "image/png"),
        "truncated_jumbf.png": (replace_png_chunk_payload(signed, b"caBX", payload[: len(payload) // 3]), "image/png"),
    }


def bad_c2pa_stores(store: dict) -> dict[str, dict]:
    """Manifest stores c2pa-python cannot be made to sign (cycles, missing links, absurd depth), made from a real
    two-link store (``openai_structure``) by rewiring its ingredient references."""
    import copy

    active = store["active_manifest"]
    inner = store["manifests"][active]["ingredients"][0]["active_manifest"]
    stores = {}

    cycle = copy.deepcopy(store)  # the ingredient's manifest lists the active manifest as its own ingredient
    cycle["manifests"][inner]["ingredients"] = [{"relationship": "parentOf", "active_manifest": active, "label": "c2pa.ingredient.v3"}]
    stores["cycle"] = cycle

    self_loop = copy.deepcopy(store)
    self_loop["manifests"][active]["ingredients"].append({"relationship": "parentOf", "active_manifest": active})
    stores["self_loop"] = self_loop

    missing = copy.deepcopy(store)
    missing["manifests"][active]["ingredients"][0]["active_manifest"] = "urn:c2pa:not-in-this-file"
    del missing["manifests"][inner]
    stores["missing_ingredient_manifest"] = missing

    deep = copy.deepcopy(store)  # 10,000 links, each the parentOf of the one before
    template = deep["manifests"][inner]
    previous = inner
    for number in range(10_000):
        label = f"urn:c2pa:deep-{number}"
        deep["manifests"][previous] = dict(template, ingredients=[{"relationship": "parentOf", "active_manifest": label}])
        previous = label
    deep["manifests"][previous] = dict(template)
    stores["deep_10000"] = deep

    wide = copy.deepcopy(store)  # 5,000 ingredients on the active manifest
    wide["manifests"][active]["ingredients"] = [
        {"relationship": "componentOf", "active_manifest": inner, "label": f"c2pa.ingredient.v3__{n}"} for n in range(5_000)
    ]
    stores["wide_5000"] = wide

    garbage = copy.deepcopy(store)
    garbage["manifests"][active]["ingredients"] = [None, 3, "x", {"relationship": ["parentOf"], "active_manifest": {"a": 1}}]
    garbage["manifests"][inner]["assertions"] = [{"label": "c2pa.actions.v2", "data": {"actions": [None, {"action": 5}]}}]
    stores["garbage_types"] = garbage

    failing = copy.deepcopy(store)  # the ingredient's manifest no longer matches what the active one signed
    delta = failing["validation_results"]["ingredientDeltas"][0]["validationDeltas"]
    delta["success"] = []
    delta["failure"] = [{"code": "ingredient.manifest.mismatch", "url": f"self#jumbf=/c2pa/{inner}", "explanation": "x"}]
    stores["ingredient_manifest_mismatch"] = failing
    return stores
