#!/usr/bin/env python3
"""Reads the event file that tests/kit_tblog.c wrote with the real `tensorboard` package and checks
every value: the record reader (which verifies both masked CRC-32Cs of every record), the legacy
EventAccumulator (scalars from simple_value, images) and the plugin EventAccumulator that TensorBoard's
UI uses (scalars migrated to tensors by data_compat, the text plugin).

usage: kit_check_tensorboard.py LOGDIR      (prints "N passed, M failed"; exit status 1 on failure)
"""
import glob
import io
import os
import sys

from pytally import check, run


def main():
    logdir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/kit_tblog_test"
    try:
        import numpy as np
        from PIL import Image
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.backend.event_processing import plugin_event_accumulator as pea
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
    except ImportError as e:
        check(False, "import: %s (run: make kit-deps)" % e)
        return
    files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    check(len(files) == 1, "one event file in %s, found %d" % (logdir, len(files)))
    if not files:
        return

    # 1. Raw records through tensorboard's TFRecord reader: it raises DataLossError on a bad CRC.
    reader = pywrap_tensorflow.PyRecordReader_New(files[0])
    events = []
    try:
        while True:
            reader.GetNext()
            events.append(event_pb2.Event.FromString(reader.record()))
    except errors.OutOfRangeError:
        pass
    except errors.DataLossError as e:
        check(False, "CRC / framing error: %s" % e)
    check(len(events) == 25, "25 records, got %d" % len(events))
    check(events[0].file_version == "brain.Event:2", "first record carries file_version")
    check(all(e.wall_time > 1.6e9 for e in events), "wall_time is a Unix time")

    # 2. Legacy accumulator: scalars and images.
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    check(sorted(tags["scalars"]) == ["loss/train", "lr", "memory/peak_mib"], "scalar tags %s" % tags["scalars"])
    check(sorted(tags["images"]) == ["samples/gradient", "samples/gray"], "image tags %s" % tags["images"])
    loss = acc.Scalars("loss/train")
    check([s.step for s in loss] == list(range(10)), "loss steps")
    check(all(s.value == float(np.float32(1.0 / (s.step + 1))) for s in loss), "loss values (float32 exact)")
    lr = acc.Scalars("lr")
    check(all(abs(s.value - 1e-3 * s.step) <= 1e-9 for s in lr), "lr values")
    mem = acc.Scalars("memory/peak_mib")
    check(len(mem) == 1 and mem[0].step == 10**12 and mem[0].value == 12345.5, "int64 step and value")

    img = acc.Images("samples/gradient")
    check(len(img) == 1 and img[0].step == 5 and img[0].width == 8 and img[0].height == 6, "image header")
    if img:
        px = np.asarray(Image.open(io.BytesIO(img[0].encoded_image_string)))
        want = np.zeros((6, 8, 3), np.uint8)
        want[:, :, 0] = np.arange(8)[None, :] * 30
        want[:, :, 1] = np.arange(6)[:, None] * 40
        want[:, :, 2] = 128
        check(px.shape == (6, 8, 3) and (px == want).all(), "RGB image pixels")
    img = acc.Images("samples/gray")
    check(len(img) == 1 and img[0].width == 5 and img[0].height == 4, "gray header")
    if img:
        px = np.asarray(Image.open(io.BytesIO(img[0].encoded_image_string)))
        want = (np.arange(5)[None, :] * 50 + np.arange(4)[:, None]).astype(np.uint8)
        check(px.shape == (4, 5) and (px == want).all(), "gray image pixels")

    # 3. What the TensorBoard UI reads: plugin accumulator, simple_value migrated to scalar tensors.
    pacc = pea.EventAccumulator(logdir, size_guidance={pea.TENSORS: 0})
    pacc.Reload()
    scalars = pacc.PluginTagToContent("scalars")
    check("loss/train" in scalars and "lr" in scalars, "scalars plugin tags %s" % list(scalars))
    t = pacc.Tensors("loss/train")
    vals = [float(np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0]) if e.tensor_proto.tensor_content
            else e.tensor_proto.float_val[0] for e in t]
    check(vals == [float(np.float32(1.0 / (i + 1))) for i in range(10)], "migrated scalar tensors %s" % vals[:3])
    check("config" in pacc.PluginTagToContent("text"), "text plugin tag")
    text = pacc.Tensors("config")
    check(len(text) == 1 and text[0].tensor_proto.string_val[0] == b"training:\n  batch_size: 4\n", "text value")


if __name__ == "__main__":
    run(main)  # a corrupt file must still end with the summary line
