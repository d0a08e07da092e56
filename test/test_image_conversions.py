"""Image message <-> numpy conversions and the engine's input normalisation."""
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from fusion_ros.image_conversions import (
    DEFAULT_MAX_PIXELS,
    THERMAL_RANGE_CENTIKELVIN,
    ImageConversionError,
    ImageTooLarge,
    compressed_image_size,
    array_to_image_fields,
    color_to_rgb_float,
    compressed_to_array,
    fixed_thermal_range,
    image_to_array,
    read_image_file,
    thermal_to_float,
    to_rgb8,
)

RNG = np.random.default_rng(0)
H, W = 6, 5


def _sample(dtype, channels):
    shape = (H, W) if channels == 1 else (H, W, channels)
    if dtype == np.float32:
        return RNG.uniform(200.0, 400.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


ROUND_TRIP = [
    ("mono8", np.uint8, 1),
    ("8UC1", np.uint8, 1),
    ("mono16", np.uint16, 1),
    ("16UC1", np.uint16, 1),
    ("32FC1", np.float32, 1),
    ("bgr8", np.uint8, 3),
    ("rgb8", np.uint8, 3),
    ("8UC3", np.uint8, 3),
    ("bgra8", np.uint8, 4),
    ("rgba8", np.uint8, 4),
]


@pytest.mark.parametrize("encoding,dtype,channels", ROUND_TRIP)
def test_round_trip_every_encoding(encoding, dtype, channels):
    array = _sample(dtype, channels)
    fields = array_to_image_fields(array, encoding)
    assert fields["step"] == W * channels * np.dtype(dtype).itemsize
    assert fields["is_bigendian"] == 0 and isinstance(fields["data"], bytes)
    back = image_to_array(SimpleNamespace(**fields))
    assert back.dtype == dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype,encoding", [(np.uint16, "mono16"), (np.float32, "32FC1")])
def test_bigendian_data_is_byte_swapped_to_native(dtype, encoding):
    array = _sample(dtype, 1)
    msg = SimpleNamespace(
        height=H, width=W, encoding=encoding, is_bigendian=1, step=W * array.itemsize,
        data=array.astype(np.dtype(dtype).newbyteorder(">")).tobytes(),
    )
    back = image_to_array(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_padded_step_is_a_view_that_skips_padding():
    data = bytearray(np.arange(8 * 3, dtype=np.uint8).tobytes())  # width 5, step 8: 3 padding bytes/row
    msg = SimpleNamespace(height=3, width=5, encoding="mono8", is_bigendian=0, step=8, data=data)
    back = image_to_array(msg)
    np.testing.assert_array_equal(back, np.arange(24, dtype=np.uint8).reshape(3, 8)[:, :5])
    data[8] = 200  # row 1, column 0: shares memory with the message, no copy
    assert back[1, 0] == 200


def test_padded_step_multichannel_and_16bit_odd_step():
    rgb = _sample(np.uint8, 3)
    padded = np.zeros((H, W * 3 + 7), np.uint8)
    padded[:, : W * 3] = rgb.reshape(H, -1)
    back = image_to_array(SimpleNamespace(height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3 + 7,
                                          data=padded.tobytes()))
    np.testing.assert_array_equal(back, rgb)
    mono16 = _sample(np.uint16, 1)
    raw = np.zeros((H, W * 2 + 1), np.uint8)  # an odd step leaves the rows unaligned
    raw[:, : W * 2] = mono16.astype("<u2").view(np.uint8).reshape(H, -1)
    back16 = image_to_array(SimpleNamespace(height=H, width=W, encoding="mono16", is_bigendian=0,
                                            step=W * 2 + 1, data=raw.tobytes()))
    np.testing.assert_array_equal(back16, mono16)
    assert back16.flags.aligned  # copied: OpenCV rejects a step that is not a multiple of 2


def test_rclpy_image_message():
    from sensor_msgs.msg import Image  # the real ROS message type, only here in the test

    bgr = _sample(np.uint8, 3)
    msg = Image(**array_to_image_fields(bgr, "bgr8"))
    msg.header.frame_id = "rgb"
    np.testing.assert_array_equal(image_to_array(msg), bgr)
    padded = Image(height=2, width=5, encoding="mono8", step=8, data=bytes(range(16)))
    np.testing.assert_array_equal(image_to_array(padded), [[0, 1, 2, 3, 4], [8, 9, 10, 11, 12]])


def test_plain_list_data():
    msg = SimpleNamespace(height=1, width=3, encoding="mono8", is_bigendian=0, step=3, data=[1, 2, 3])
    np.testing.assert_array_equal(image_to_array(msg), [[1, 2, 3]])


def _msg(**over):
    fields = dict(height=2, width=3, encoding="mono16", is_bigendian=0, step=6, data=bytes(12))
    fields.update(over)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize(
    "over,words",
    [
        (dict(encoding="yuv422"), ["yuv422", "supported"]),
        (dict(height=0, data=b""), ["empty", "height=0"]),
        (dict(width=0), ["empty", "width=0"]),
        (dict(step=5), ["step 5", "3*2 = 6"]),
        (dict(data=bytes(11)), ["needs 12 bytes", "data has 11"]),
    ],
)
def test_bad_messages_raise_with_useful_message(over, words):
    with pytest.raises(ImageConversionError) as info:
        image_to_array(_msg(**over))
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_array_to_image_fields_rejects_wrong_dtype_and_shape():
    with pytest.raises(ImageConversionError, match="uint16"):
        array_to_image_fields(np.zeros((2, 2), np.uint8), "mono16")
    with pytest.raises(ImageConversionError, match="H×W×3"):
        array_to_image_fields(np.zeros((2, 2), np.uint8), "bgr8")
    with pytest.raises(ImageConversionError, match="empty"):
        array_to_image_fields(np.zeros((0, 2), np.uint8), "mono8")
    fields = array_to_image_fields(np.zeros((2, 2, 1), np.uint8), "mono8")
    assert (fields["height"], fields["width"], fields["step"]) == (2, 2, 2)


def test_thermal_fixed_ranges():
    np.testing.assert_allclose(thermal_to_float(np.array([[0, 51, 255]], np.uint8), "mono8"), [[0, 0.2, 1]])
    # 16-bit centikelvin: -20 degC -> 0, +30 degC -> 0.5, +80 degC -> 1, beyond clipped
    counts = np.array([[27315 - 2000, 27315 + 3000, 27315 + 8000, 0, 65535]], np.uint16)
    out = thermal_to_float(counts, "mono16")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.5, 1, 0, 1]], atol=1e-6)
    kelvin = np.array([[253.15, 303.15, 353.15]], np.float32)
    np.testing.assert_allclose(thermal_to_float(kelvin, "32FC1"), [[0, 0.5, 1]], atol=1e-5)
    celsius = np.array([[-20.0, 30.0, 80.0]], np.float32)
    np.testing.assert_allclose(thermal_to_float(celsius, "32FC1", low=-20, high=80), [[0, 0.5, 1]], atol=1e-6)


def test_fixed_thermal_range_per_encoding():
    model = (27000.0, 33000.0)
    assert fixed_thermal_range("mono16") == THERMAL_RANGE_CENTIKELVIN == (25315.0, 35315.0)
    assert fixed_thermal_range("mono16", None, model) == fixed_thermal_range("16UC1", None, model) == model
    assert fixed_thermal_range("mono8", None, model) == (0.0, 255.0)  # the model's range is 16-bit only
    np.testing.assert_allclose(fixed_thermal_range("32FC1", None, model), (253.15, 353.15))  # kelvin
    assert fixed_thermal_range("32FC1", (-20.0, 80.0), model) == (-20.0, 80.0)  # configured wins
    frame = np.array([[25315, 30315, 35315, 40000]], np.uint16)
    np.testing.assert_allclose(thermal_to_float(frame, "mono16", "fixed", *fixed_thermal_range("mono16")),
                               [[0, 0.5, 1, 1]])


def test_thermal_auto_is_robust_to_outliers_and_flat_frames():
    frame = np.full((100, 100), 30000, np.uint16)
    frame[:, 50:] = 31000
    frame[0, 0] = 65535  # one hot dead pixel must not squash the range
    out = thermal_to_float(frame, "16UC1", mode="auto")
    assert out[1, 0] == 0.0 and out[1, 99] == 1.0
    flat = thermal_to_float(np.full((4, 4), 7, np.uint8), "mono8", mode="auto")
    np.testing.assert_array_equal(flat, 0.0)


def test_thermal_errors():
    bad = np.ones((3, 3), np.float32)
    bad[0, 0], bad[1, 1] = np.nan, np.inf
    with pytest.raises(ImageConversionError, match="2 NaN/inf pixels of 9"):
        thermal_to_float(bad, "32FC1")
    with pytest.raises(ImageConversionError, match="bgr8"):
        thermal_to_float(np.zeros((2, 2, 3), np.uint8), "bgr8")
    with pytest.raises(ImageConversionError, match="uint16"):
        thermal_to_float(np.zeros((2, 2), np.uint8), "mono16")
    with pytest.raises(ValueError, match="low < high"):
        thermal_to_float(np.zeros((2, 2), np.uint8), "mono8", low=10, high=10)
    with pytest.raises(ValueError, match="'fixed' or 'auto'"):
        thermal_to_float(np.zeros((2, 2), np.uint8), "mono8", mode="percentile")


@pytest.mark.parametrize("encoding", ["bgr8", "8UC3", "rgb8", "bgra8", "rgba8", "mono8"])
def test_color_to_rgb_float(encoding):
    rgb = _sample(np.uint8, 3)
    source = {
        "bgr8": rgb[:, :, ::-1],
        "8UC3": rgb[:, :, ::-1],
        "rgb8": rgb,
        "bgra8": np.dstack([rgb[:, :, ::-1], np.full((H, W), 9, np.uint8)]),
        "rgba8": np.dstack([rgb, np.full((H, W), 9, np.uint8)]),
        "mono8": rgb[:, :, 0],
    }[encoding]
    out = color_to_rgb_float(source, encoding)
    assert out.dtype == np.float32 and out.shape == (H, W, 3) and out.flags.c_contiguous
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_allclose(out, expected / 255.0, atol=1e-6)


def test_to_rgb8():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    alpha = np.full((4, 5, 1), 7, np.uint8)
    np.testing.assert_array_equal(to_rgb8(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb[:, :, ::-1], "bgr8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb[:, :, ::-1], alpha], 2), "bgra8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb, alpha], 2), "rgba8"), rgb)
    mono = to_rgb8(rgb[:, :, 0], "mono8")
    assert mono.shape == (4, 5, 3) and mono.flags.c_contiguous and (mono[:, :, 2] == rgb[:, :, 0]).all()
    with pytest.raises(ImageConversionError, match="yuv422"):
        to_rgb8(rgb, "yuv422")
    with pytest.raises(ImageConversionError, match="non-empty H×W×3"):
        to_rgb8(np.zeros((0, 5, 3), np.uint8), "rgb8")


def test_color_errors():
    with pytest.raises(ImageConversionError, match="mono16"):
        color_to_rgb_float(np.zeros((2, 2), np.uint16), "mono16")
    with pytest.raises(ImageConversionError, match="H×W×3"):
        color_to_rgb_float(np.zeros((2, 2, 4), np.uint8), "bgr8")
    with pytest.raises(ImageConversionError, match="uint8"):
        color_to_rgb_float(np.zeros((2, 2, 3), np.uint16), "bgr8")


def test_compressed_jpeg_png_and_16bit_png():
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[:, :, 2] = 255  # pure red, stored BGR
    _, jpeg = cv2.imencode(".jpg", bgr)
    image, encoding = compressed_to_array("jpeg", jpeg.tobytes())
    assert encoding == "bgr8" and image.shape == (16, 16, 3)
    assert abs(int(image[8, 8, 2]) - 255) <= 2 and image[8, 8, 0] <= 2
    mono16 = _sample(np.uint16, 1)
    _, png = cv2.imencode(".png", mono16)
    image, encoding = compressed_to_array("mono16; png compressed ", png.tobytes())
    assert encoding == "mono16" and image.dtype == np.uint16
    np.testing.assert_array_equal(image, mono16)
    depth = bytes(12) + png.tobytes()  # image_transport compressedDepth: 12-byte header, then PNG
    image, encoding = compressed_to_array("16UC1; compressedDepth png", np.frombuffer(depth, np.uint8))
    np.testing.assert_array_equal(image, mono16)
    _, gray = cv2.imencode(".png", mono16.astype(np.uint8))
    assert compressed_to_array("png", gray.tobytes())[1] == "mono8"


def test_compressed_errors():
    with pytest.raises(ImageConversionError, match=r"cannot decode compressed image \('jpeg', 5 bytes\)"):
        compressed_to_array("jpeg", b"hello")
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_array("png", b"")
    with pytest.raises(ImageConversionError, match="no PNG after"):
        compressed_to_array("16UC1; compressedDepth png", bytes(40))


# ------------------------------------------------------------------------- pixel limit (issue 13, fault 1)
def _lying_png(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is rewritten to declare width x height (CRC fixed, data left short)."""
    import struct
    import zlib

    _, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_compressed_header_sizes_are_read_without_decoding():
    _, png = cv2.imencode(".png", np.zeros((7, 9), np.uint16))
    _, jpeg = cv2.imencode(".jpg", np.zeros((11, 13, 3), np.uint8))
    _, progressive = cv2.imencode(".jpg", np.zeros((5, 3, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert compressed_image_size(png.tobytes()) == ("png", 9, 7)
    assert compressed_image_size(jpeg) == ("jpeg", 13, 11)
    assert compressed_image_size(progressive.tobytes()) == ("jpeg", 3, 5)
    assert compressed_image_size(_lying_png(20000, 20000)) == ("png", 20000, 20000)
    assert compressed_image_size(b"not an image at all") is None
    assert compressed_image_size(jpeg.tobytes()[:4]) is None


def test_a_small_png_declaring_a_huge_image_is_rejected_before_decoding():
    import time

    lying = _lying_png(20000, 20000)  # 1.2 GB as bgr8 if decoded
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"20000x20000 .* exceeds the pixel limit of 16777216"):
        compressed_to_array("png", lying, max_pixels=DEFAULT_MAX_PIXELS)
    assert time.perf_counter() - started < 2.0  # nothing decoded or allocated
    with pytest.raises(ImageTooLarge):  # the lie in `format` does not matter, the data's header does
        compressed_to_array("jpeg", lying, max_pixels=100 * 100)
    _, jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImageTooLarge, match="64x64"):
        compressed_to_array("jpeg", jpeg, max_pixels=64 * 63)
    assert compressed_to_array("jpeg", jpeg, max_pixels=64 * 64)[0].shape == (64, 64, 3)


def test_a_raw_image_over_the_pixel_limit_is_rejected_before_reading_its_data():
    msg = SimpleNamespace(height=5000, width=5000, encoding="mono8", is_bigendian=0, step=5000, data=b"")
    with pytest.raises(ImageTooLarge, match=r"5000x5000 .* exceeds the pixel limit of 16777216"):
        image_to_array(msg, max_pixels=DEFAULT_MAX_PIXELS)
    ok = SimpleNamespace(height=4, width=4, encoding="mono8", is_bigendian=0, step=4, data=bytes(16))
    assert image_to_array(ok, max_pixels=16).shape == (4, 4)
    with pytest.raises(ImageTooLarge):
        image_to_array(ok, max_pixels=15)


def test_data_that_is_neither_png_nor_jpeg_is_not_handed_to_opencv():
    _, bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageConversionError, match="no complete PNG or JPEG header"):
        compressed_to_array("bmp", bmp.tobytes())


def test_decoder_complaints_are_routed_into_the_error_not_onto_stderr(capfd):
    """Issue 13 fault 5: libpng / libjpeg / OpenCV print their own lines to stderr for every bad frame."""
    rng = np.random.default_rng(0)
    _, png = cv2.imencode(".png", rng.integers(0, 65535, (64, 64)).astype(np.uint16))
    corrupt = bytearray(png.tobytes())
    corrupt[60:80] = bytes(20)  # inside IDAT: "libpng error: IDAT: CRC error"
    with pytest.raises(ImageConversionError, match=r"cannot decode compressed image \('png', \d+ bytes\): libpng"):
        compressed_to_array("png", bytes(corrupt))
    with pytest.raises(ImageConversionError):
        compressed_to_array("png", png.tobytes()[:60])  # OpenCV: "PNG input buffer is incomplete"
    _, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (64, 64, 3)).astype(np.uint8))
    damaged = jpeg.tobytes()[:300] + b"\xff\xd9"  # libjpeg: "Corrupt JPEG data: ... extraneous bytes"
    try:
        compressed_to_array("jpeg", damaged)
    except ImageConversionError:
        pass
    os.write(2, b"a line of someone else\n")  # other stderr output is untouched
    err = capfd.readouterr().err
    assert "libpng" not in err and "Corrupt JPEG" not in err and "WARN" not in err, err
    assert "a line of someone else" in err


def test_image_files_are_read_like_imread_and_bad_ones_named_without_decoder_lines(tmp_path, capfd):
    rng = np.random.default_rng(1)
    good = rng.integers(0, 255, (40, 48, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "good.png"), good)
    cv2.imwrite(str(tmp_path / "grey.jpg"), good[..., 0])
    assert np.array_equal(read_image_file(tmp_path / "good.png"), good)
    assert np.array_equal(read_image_file(tmp_path / "grey.jpg"), cv2.imread(str(tmp_path / "grey.jpg"), cv2.IMREAD_UNCHANGED))
    _, jpeg = cv2.imencode(".jpg", good)
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: jpeg.size // 2])  # truncated: imdecode gives nothing
    (tmp_path / "bad.jpg").write_bytes(jpeg.tobytes()[:-200] + b"\xff\xd9")  # "Corrupt JPEG data: premature end"
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for name, match in (("bad.jpg", r"visible image .*bad.jpg is damaged \(Corrupt JPEG data"),
                        ("cut.jpg", r"cannot decode visible image .*cut.jpg: not a complete image file"),
                        ("text.png", r"cannot decode visible image .*text.png"),
                        ("empty.png", r"cannot read visible image .*empty.png: the file is empty"),
                        ("missing.png", r"cannot read visible image .*missing.png")):
        with pytest.raises(ImageConversionError, match=match):
            read_image_file(tmp_path / name, "visible image")
    err = capfd.readouterr().err
    assert "JPEG" not in err and "WARN" not in err and "libpng" not in err, err
