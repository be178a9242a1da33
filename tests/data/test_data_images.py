"""Image folders with odd content (issue 14): 16-bit and float images keep their values, every
PIL mode converts, declared sizes and file counts are bounded before decoding, and every bad
folder or file is one DataError line. All images are written here, most a few pixels big."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lifelong.data import DataError, files, load_task, pixels

RAMP16 = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))  # mean 0.5


def one_class(root, images: dict) -> str:
    """root/a/<name> for each image (PIL image or raw bytes), root/b/ok.png; the spec of the
    folder with every file on the train side (DIR/train + DIR/test layout)."""
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4), 0).save(root / split / "b" / "ok.png")
    for name, im in images.items():
        path = root / "train" / "a" / name
        path.write_bytes(im) if isinstance(im, bytes) else im.save(path)
    return f"folder:path={root}"


def class_a(spec: str) -> np.ndarray:
    t = load_task(spec)
    return t.x[t.y == 0].numpy()


@pytest.mark.parametrize(
    "name, image",
    [
        ("ramp16.png", Image.fromarray(RAMP16)),  # mode I;16
        ("ramp16b.tif", Image.fromarray(RAMP16.astype(">u2"))),  # mode I;16B
        ("ramp32.tif", Image.fromarray(RAMP16.astype(np.int32))),  # mode I
        ("rampf.tif", Image.fromarray(RAMP16.astype(np.float32) / 65535)),  # mode F
    ],
)
def test_high_depth_images_are_scaled_not_clipped(tmp_path, name, image):
    spec = one_class(tmp_path, {name: image})
    (x,) = class_a(spec)
    assert x.mean() == pytest.approx(0.5, abs=0.01)  # clipped to 8 bits, it was 0.998
    assert x[0, 14, 0] < 0.05 and x[0, 14, -1] > 0.95  # dark left, light right
    (rgb,) = class_a(spec + ":mode=rgb")
    assert rgb.mean() == pytest.approx(0.5, abs=0.01)


def test_to_8bit_value_ranges():
    def grey(img):
        out = pixels.to_8bit(img)
        assert out.mode == "L"
        return np.asarray(out)

    dark16 = Image.fromarray(np.full((2, 2), 257, np.uint16))  # 1/255 of the 16-bit range
    assert grey(dark16).tolist() == [[1, 1], [1, 1]]  # stays dark: scaled by 65535
    # floats outside [0, 1] (a TIFF of raw intensities): scaled by their own range;
    # non-finite values count as 0
    f = Image.fromarray(np.array([[-5.0, 5.0], [np.nan, 15.0]], np.float32))
    assert grey(f).tolist() == [[0, 128], [64, 255]]
    # 32-bit integers beyond 16 bits: their min..max
    big = Image.fromarray(np.array([[0, 100_000], [200_000, 200_000]], np.int32))
    assert grey(big).tolist() == [[0, 128], [255, 255]]
    flat = Image.fromarray(np.full((2, 2), 7.5, np.float32))
    assert grey(flat).tolist() == [[0, 0], [0, 0]]
    lab = Image.new("LAB", (2, 2), (200, 10, 10))
    assert grey(lab).tolist() == [[200, 200], [200, 200]]  # its lightness
    rgb = Image.new("RGB", (2, 2))
    assert pixels.to_8bit(rgb) is rgb  # 8-bit modes are left to PIL


def test_every_pil_mode_converts_with_the_right_values(tmp_path):
    images = {
        "rgba.png": Image.new("RGBA", (9, 7), (255, 255, 255, 255)),  # opaque white
        "clear.png": Image.new("RGBA", (9, 7), (255, 255, 255, 0)),  # transparent: black
        "pal.png": Image.new("P", (9, 9), 0),
        "cmyk.tif": Image.new("CMYK", (9, 9), (0, 0, 0, 0)),  # no ink: white
        "bw.png": Image.new("1", (9, 9), 1),
        "la.png": Image.new("LA", (9, 9), (128, 255)),
        "lab.tif": Image.new("LAB", (9, 9), (255, 128, 128)),
        "ycc.tif": Image.new("YCbCr", (9, 9), (255, 128, 128)),
        "one.png": Image.new("L", (1, 1), 255),  # a 1x1 image
        "tall.png": Image.new("L", (1, 300), 255),
    }
    images["pal.png"].putpalette([255, 255, 255] * 256)  # palette entry 0 is white
    spec = one_class(tmp_path, images)
    x = class_a(spec)
    means = dict(zip(sorted(images), x.reshape(len(x), -1).mean(1).round(2), strict=True))
    assert means == {
        "bw.png": 1.0, "clear.png": 0.0, "cmyk.tif": 1.0, "la.png": 0.5, "lab.tif": 1.0,
        "one.png": 1.0, "pal.png": 1.0, "rgba.png": 1.0, "tall.png": 1.0, "ycc.tif": 1.0,
    }  # fmt: skip
    assert class_a(spec + ":mode=rgb").shape == (len(images), 3, 28, 28)


def png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h grey pixels and holds almost none (an IHDR and an IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    spec = one_class(tmp_path / "a", {"wide.png": png_header(8000, 6000)})
    with pytest.raises(DataError, match=r"wide.png: image of 8000x6000 pixels is over the limit"):
        load_task(spec)
    # beyond twice PIL's own guard, Image.open refuses first: still one line
    spec = one_class(tmp_path / "b", {"huge.png": png_header(100_000, 100_000)})
    with pytest.raises(DataError, match="huge.png: Image size") as e:
        load_task(spec)
    assert "\n" not in str(e.value)


def test_unreadable_files_name_the_file(tmp_path):
    cases = {
        "text.png": b"just some text",
        "empty.jpg": b"",
        "cut.png": png_header(20, 20),  # declares pixels, holds none
        "zero.png": png_header(0, 0),
    }
    for i, (name, raw) in enumerate(cases.items()):
        spec = one_class(tmp_path / str(i), {name: raw})
        with pytest.raises(DataError, match=name) as e:
            load_task(spec)
        assert "\n" not in str(e.value)


def test_folder_layouts(tmp_path):
    spec = one_class(tmp_path / "x", {"._a.png": b"macOS metadata", "notes.txt": b"hi"})
    assert len(load_task(spec)) == 1  # hidden files and other extensions are not images
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders with images"):
        load_task(f"folder:path={tmp_path / 'empty'}")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "x.txt").write_text("no image")
    with pytest.raises(DataError, match="no class sub-folders with images"):
        load_task(f"folder:path={tmp_path / 'noimg'}")
    loop = tmp_path / "loop" / "a"
    loop.mkdir(parents=True)
    (loop / "l.png").symlink_to(loop / "l.png")
    with pytest.raises(DataError, match="l.png") as e:
        load_task(f"folder:path={tmp_path / 'loop'}")
    assert "\n" not in str(e.value)
    file = tmp_path / "file"
    file.write_text("not a folder")
    with pytest.raises(DataError, match="dataset directory not found"):
        load_task(f"folder:path={file}")


def test_absurd_numbers_of_files_are_bounded_before_decoding(tmp_path, monkeypatch):
    decoded = []
    convert = files._convert
    monkeypatch.setattr(files, "_convert", lambda p, m: decoded.append(p) or convert(p, m))
    monkeypatch.setattr(files, "FOLDER_MAX_IMAGES", 10)
    monkeypatch.setattr(files, "FOLDER_MAX_ENTRIES", 30)
    monkeypatch.setattr(files, "FOLDER_MAX_CLASSES", 3)
    png = png_header(2, 2)
    many = tmp_path / "many" / "a"
    many.mkdir(parents=True)
    for i in range(12):
        (many / f"{i}.png").write_bytes(png)
    with pytest.raises(DataError, match="more than 10 images"):
        load_task(f"folder:path={tmp_path / 'many'}")
    junk = tmp_path / "junk" / "a"
    junk.mkdir(parents=True)
    for i in range(31):
        (junk / f"{i}.txt").write_bytes(b"")
    with pytest.raises(DataError, match="more than 30 files and folders"):
        load_task(f"folder:path={tmp_path / 'junk'}")
    for c in "abcd":
        (tmp_path / "classes" / c).mkdir(parents=True)
    with pytest.raises(DataError, match="4 class folders, at most 3"):
        load_task(f"folder:path={tmp_path / 'classes'}")
    assert decoded == []  # all refused from the listing alone


def test_a_class_subset_with_no_images_is_refused(tmp_path):
    spec = one_class(tmp_path, {"x.png": Image.new("L", (4, 4))})
    (tmp_path / "train" / "c").mkdir()  # a class folder without images is not a class
    with pytest.raises(DataError, match="index 2 out of range"):
        load_task(spec + ":classes=2")
    assert len(load_task(spec + ":classes=1")) == 1
