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
