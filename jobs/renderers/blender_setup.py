"""Run inside Blender (`blender -b ... --python blender_setup.py -a -- <json>`) after the scene file loads.

First an allow-list: a file that uses something that could run code or read or write outside the chunk's
scratch directory is refused with a line `RENDERFARM_REFUSED: <what, where, how to fix>` (the job fails at
once with that message; retrying cannot help). Then what stays in scratch is forced there (simulation and
point caches), the compositor's File Output nodes are removed, and the worker's settings are applied:
output path and format, the frame range, Cycles on CPU without denoising, and the job's overrides of width,
height and samples. Lines starting `RENDERFARM_ERROR:` are errors for the customer; both are read by
jobs/renderers/blender.py. No imports beyond bpy and the standard library.

This is one of two walls: Blender itself runs in a sandbox (jobs/sandbox/) that sees only its scratch
directory, this file and the system's read-only files, with no network.
"""

import json
import sys

import bpy

LISTED = 5  # refused items named in the message; the rest are counted
PACK = "pack it into the .blend (File > External Data > Pack Resources)"


def fail(message):
    print(f"RENDERFARM_ERROR: {message}", flush=True)
    raise SystemExit(3)


def refuse(problems):
    shown = "; ".join(problems[:LISTED])
    more = f"; and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
    print(f"RENDERFARM_REFUSED: The scene file is refused: {shown}{more}.", flush=True)
    raise SystemExit(3)


def report_saved(scene, *args):
    """After each frame is written: Python's own flushed line, which arrives at once (Blender's C output to
    a pipe may be buffered)."""
    frame = scene.frame_current
    print(f"RENDERFARM_SAVED {frame} {scene.render.frame_path(frame=frame)}", flush=True)


def _packed(block):
    return bool(getattr(block, "packed_file", None)) or bool(len(getattr(block, "packed_files", ()) or ()))


def _node_trees():
    """Every node tree a render may evaluate: materials, worlds, lights, groups, compositors, textures."""
    owners = [*bpy.data.materials, *bpy.data.worlds, *bpy.data.lights, *bpy.data.textures, *bpy.data.scenes]
    trees = [o.node_tree for o in owners if getattr(o, "node_tree", None) is not None]
    return [*trees, *bpy.data.node_groups]


def refusals():
    """What the file does that the farm does not allow, each as `<what> (<where>): <how to fix>`."""
    problems = []
    for lib in bpy.data.libraries:
        problems.append(f"a linked library ({lib.filepath}): make its data local or append it into one file")
    for scene in bpy.data.scenes:
        if scene.render.use_freestyle:
            for layer in scene.view_layers:
                if layer.use_freestyle and layer.freestyle_settings.mode == "SCRIPT":
                    problems.append(
                        f"Freestyle in Python Scripting mode (scene {scene.name!r}, view layer {layer.name!r}) runs "
                        "code from the file: switch Freestyle to Parameter Editor mode"
                    )
        cycles = getattr(scene, "cycles", None)
        if scene.render.engine == "CYCLES" and cycles is not None and getattr(cycles, "shading_system", False):
            problems.append(
                f"Open Shading Language (scene {scene.name!r}) compiles and runs scripts: turn Open Shading "
                "Language off"
            )
    files = (
        ("image", bpy.data.images, lambda i: i.source in {"FILE", "SEQUENCE", "MOVIE", "TILED"}),
        ("sound", bpy.data.sounds, lambda s: True),
        ("font", bpy.data.fonts, lambda f: f.filepath != "<builtin>"),
        ("volume", bpy.data.volumes, lambda v: True),
    )
    for kind, blocks, from_file in files:
        for block in blocks:
            if block.users and from_file(block) and not _packed(block):
                problems.append(f"{kind} {block.name!r} is read from {block.filepath or 'a file'}: {PACK}")
    for clip in bpy.data.movieclips:
        if clip.users:
            problems.append(f"movie clip {clip.name!r} is read from {clip.filepath}: movie clips cannot be packed")
    for cache in bpy.data.cache_files:
        if cache.users:
            problems.append(
                f"cache file {cache.name!r} is read from {cache.filepath}: Alembic/USD caches cannot be packed; "
                "apply the animation or bake it into the file"
            )
    for tree in _node_trees():
        for node in tree.nodes:
            if node.bl_idname == "ShaderNodeTexIES" and node.mode == "EXTERNAL":
                problems.append(f"IES texture {node.name!r} is read from {node.filepath}: set it to Internal")
    for obj in bpy.data.objects:
        for mod in obj.modifiers:
            where = f"object {obj.name!r}, modifier {mod.name!r}"
            if mod.type == "MESH_CACHE":
                problems.append(f"a Mesh Cache modifier ({where}) reads {mod.filepath}: apply it")
            elif mod.type == "MULTIRES" and mod.is_external:
                problems.append(f"external multires data ({where}) is read from {mod.filepath}: pack it")
            elif mod.type == "OCEAN" and mod.is_cached:
                problems.append(f"a baked ocean ({where}) is read from {mod.filepath}: delete the bake")
    return problems


def point_caches():
    """Every point cache of the file (particles, cloth, soft bodies, dynamic paint, rigid bodies)."""
    for scene in bpy.data.scenes:
        world = scene.rigidbody_world
        if world is not None and world.point_cache is not None:
            yield world.point_cache
    for obj in bpy.data.objects:
        for system in obj.particle_systems:
            yield system.point_cache
        for mod in obj.modifiers:
            if getattr(mod, "point_cache", None) is not None:
                yield mod.point_cache
            if mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
                for surface in mod.canvas_settings.canvas_surfaces:
                    yield surface.point_cache


def confine_caches(scratch):
    """Simulation caches stay in the scratch directory: an external point cache would read any path, a fluid
    domain's cache directory would write to any path, a dynamic paint surface would write its images
    anywhere. (Disk caches without external paths sit next to the .blend, which is in scratch.)"""
    for cache in point_caches():
        cache.use_external = False
    n = 0
    for obj in bpy.data.objects:
        for mod in obj.modifiers:
            if mod.type == "FLUID" and mod.fluid_type == "DOMAIN":
                n += 1
                mod.domain_settings.cache_directory = f"{scratch}/caches/fluid_{n}"
            elif mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
                for surface in mod.canvas_settings.canvas_surfaces:
                    n += 1
                    surface.image_output_path = f"{scratch}/caches/paint_{n}"


def remove_file_outputs():
    """The compositor's File Output nodes would write anywhere: the farm writes the frames itself."""
    for scene in bpy.data.scenes:
        tree = scene.node_tree
        if tree is not None:
            for node in [n for n in tree.nodes if n.bl_idname == "CompositorNodeOutputFile"]:
                tree.nodes.remove(node)


def main():
    cfg = json.loads(sys.argv[sys.argv.index("--") + 1])
    if bpy.data.filepath != cfg["scene"]:
        fail("The file is not a Blender scene Blender could open.")
    scene = bpy.context.scene
    problems = refusals()
    if problems:
        refuse(problems)
    if scene.camera is None:
        fail(f"Scene {scene.name!r} has no active camera.")
    confine_caches(cfg["scratch"])
    remove_file_outputs()
    render = scene.render
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
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    print(
        f"RENDERFARM_READY frames {cfg['first']}-{cfg['last']} {width}x{height} "
        f"{scene.cycles.samples} samples {image.file_format}",
        flush=True,
    )


main()
