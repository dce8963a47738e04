"""Run inside Blender (`blender -b ... --python blender_setup.py -a -- <json>`) after the scene file loads.

The worker's settings, never the scene file's: output path and format, the frame range, Cycles on CPU
without denoising, and the job's overrides of width, height and samples. Lines starting `RENDERFARM_ERROR:`
are read by jobs/renderers/blender.py as the customer-facing error. No imports beyond bpy and the stdlib.
"""

import json
import sys

import bpy


def fail(message):
    print(f"RENDERFARM_ERROR: {message}", flush=True)
    raise SystemExit(3)


def report_saved(scene, *args):
    """After each frame is written: Python's own flushed line, which arrives at once (Blender's C output to
    a pipe may be buffered)."""
    frame = scene.frame_current
    print(f"RENDERFARM_SAVED {frame} {scene.render.frame_path(frame=frame)}", flush=True)


def main():
    cfg = json.loads(sys.argv[sys.argv.index("--") + 1])
    if bpy.data.filepath != cfg["scene"]:
        fail("The file is not a Blender scene Blender could open.")
    scene = bpy.context.scene
    if scene.camera is None:
        fail(f"Scene {scene.name!r} has no active camera.")
    if bpy.data.libraries:
        # A linked library reads another file from the worker (even another owner's cached scene).
        fail("The scene links other .blend files (libraries); make them local or pack them into one file.")
    render = scene.render
    # The compositor's File Output nodes and the sequencer could write files anywhere the worker can: the
    # farm writes the rendered frames itself, to its own directory.
    render.use_compositing = False
    render.use_sequencer = False
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    if cfg.get("width"):
        render.resolution_x, render.resolution_percentage = cfg["width"], 100
    if cfg.get("height"):
        render.resolution_y, render.resolution_percentage = cfg["height"], 100
    if cfg.get("samples"):
        scene.cycles.samples = cfg["samples"]
    render.filepath = cfg["output"]
    render.use_file_extension = True
    render.use_overwrite = True
    render.use_placeholder = False
    render.use_persistent_data = True  # keep the scene's BVH between the chunk's frames
    image = render.image_settings
    image.file_format = "JPEG" if cfg["format"] == "jpeg" else "PNG"
    image.color_mode = "RGB"
    if image.file_format == "PNG":
        image.color_depth = "8"
    else:
        image.quality = 90
    scene.frame_start, scene.frame_end, scene.frame_step = cfg["first"], cfg["last"], 1
    bpy.app.handlers.render_write.append(report_saved)
    unpacked = [i.name for i in bpy.data.images if i.source == "FILE" and not i.packed_file]
    if unpacked:
        print(f"RENDERFARM_WARNING: images not packed into the file (rendered without): {unpacked[:10]}")
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    print(
        f"RENDERFARM_READY frames {cfg['first']}-{cfg['last']} {width}x{height} "
        f"{scene.cycles.samples} samples {image.file_format}",
        flush=True,
    )


main()
