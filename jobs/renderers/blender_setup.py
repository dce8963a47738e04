"""Run inside Blender after the file loads (`blender -b -Y ... --python-expr <this file> -a|-f <frames> -- <json>`).

It renders what the file says, with as few changes as the farm needs, and says what it changed:
- An allow-list first: a file that uses something that could run code (Freestyle in Python Scripting mode,
  Open Shading Language) or links other .blend files is refused with `RENDERFARM_REFUSED: <what, where,
  how to fix>` (the job fails at once; retrying cannot help). Files it reads from outside itself (images,
  fonts, sounds, volumes, caches, clips that are not packed) are refused the same way with
  `missing_files: fail` (the job's `fail_on_missing_files`, on by default), else rendered without them (the
  sandbox could not reach them anyway) with a warning.
- Then what stays in scratch is forced there (simulation and point caches), the compositor's File Output
  nodes are removed, and the worker's settings are applied: output path and format (PNG with the file's
  alpha and bit depth, JPEG, or OpenEXR), the frame range, and only the overrides the job gives (width,
  height, samples). The engine, its settings, film transparency and the compositor are the file's; for
  Cycles the device is the CPU and denoising is off (this Blender has no OpenImageDenoise).
- Each change to the file's own settings is a line `RENDERFARM_WARNING: <text>`; errors for the customer
  are `RENDERFARM_ERROR: <text>`; both are read by jobs/renderers/blender.py.
- `mode: serve` (a persistent Blender, kept by the worker across chunks of one job): after the checks and
  settings, it renders the chunks the worker writes to its input, one JSON line each ({"seq": n, "frames":
  [...], "output": "<dir>/frame_#####"}), and prints `RENDERFARM_DONE <seq>` after each; it ends at the
  input's end. The input carries only the worker's frame numbers and a path in scratch: nothing the file
  could use to reach anything else.
- `mode: inspect` prints `RENDERFARM_INSPECTION <json>`: the file's settings, what it would refuse and the
  files it reads from outside (the API shows it at GET /api/assets/<sha256>); then, unless the file is
  refused, it renders the first frame once, with the farm's settings and nothing written, and prints
  `RENDERFARM_SPEED <seconds>`: the measured speed that picks the chunk size of a job that gives none.
No imports beyond bpy and the standard library. Blender itself runs in a sandbox (jobs/sandbox/).
"""

import json
import sys
import time

import bpy

LISTED = 5  # items named in a message; the rest are counted
PACK = "pack it into the .blend (File > External Data > Pack Resources)"
ENGINES = {"CYCLES": "cycles", "BLENDER_EEVEE": "eevee", "BLENDER_WORKBENCH": "workbench"}
FILE_FORMATS = {"PNG": "png", "JPEG": "jpeg", "OPEN_EXR": "exr", "OPEN_EXR_MULTILAYER": "exr"}


def fail(message):
    print(f"RENDERFARM_ERROR: {message}", flush=True)
    raise SystemExit(3)


def listed(items):
    shown = "; ".join(items[:LISTED])
    return shown + (f"; and {len(items) - LISTED} more" if len(items) > LISTED else "")


def refuse(problems):
    print(f"RENDERFARM_REFUSED: The scene file is refused: {listed(problems)}.", flush=True)
    raise SystemExit(3)


def warn(text):
    print(f"RENDERFARM_WARNING: {text}", flush=True)


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
    """What the file does that the farm never allows, each as `<what> (<where>): <how to fix>`."""
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
    return problems


def outside_files():
    """Files the scene would read from outside itself: [{"kind", "name", "path", "fix"}]."""
    found = []

    def add(kind, name, path, fix=PACK):
        found.append({"kind": kind, "name": name, "path": path or "", "fix": fix})

    files = (
        ("image", bpy.data.images, lambda i: i.source in {"FILE", "SEQUENCE", "MOVIE", "TILED"}),
        ("sound", bpy.data.sounds, lambda s: True),
        ("font", bpy.data.fonts, lambda f: f.filepath != "<builtin>"),
        ("volume", bpy.data.volumes, lambda v: True),
    )
    for kind, blocks, from_file in files:
        for block in blocks:
            if block.users and from_file(block) and not _packed(block):
                add(kind, block.name, block.filepath)
    for clip in bpy.data.movieclips:
        if clip.users:
            add("movie clip", clip.name, clip.filepath, "movie clips cannot be packed: render them into images")
    for cache in bpy.data.cache_files:
        if cache.users:
            add("cache file", cache.name, cache.filepath, "Alembic/USD caches cannot be packed: apply or bake them")
    for tree in _node_trees():
        for node in tree.nodes:
            if node.bl_idname == "ShaderNodeTexIES" and node.mode == "EXTERNAL":
                add("IES texture", node.name, node.filepath, "set it to Internal")
    for obj in bpy.data.objects:
        for mod in obj.modifiers:
            name = f"{obj.name}/{mod.name}"
            if mod.type == "MESH_CACHE":
                add("Mesh Cache modifier", name, mod.filepath, "apply the modifier")
            elif mod.type == "MULTIRES" and mod.is_external:
                add("external multires data", name, mod.filepath, "pack it")
            elif mod.type == "OCEAN" and mod.is_cached:
                add("baked ocean", name, mod.filepath, "delete the bake")
    for scene in bpy.data.scenes:
        editor = scene.sequence_editor
        for strip in editor.sequences_all if editor is not None and scene.render.use_sequencer else ():
            if strip.type in {"MOVIE", "IMAGE"}:
                add(
                    f"{strip.type.lower()} strip",
                    strip.name,
                    getattr(strip, "filepath", "") or strip.directory,
                    "render the strip's media into the file's images and pack them",
                )
    return found


def describe(files):
    return [f"{f['kind']} {f['name']!r} is read from {f['path'] or 'a file'}: {f['fix']}" for f in files]


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
    removed = 0
    for scene in bpy.data.scenes:
        tree = scene.node_tree
        if tree is not None:
            for node in [n for n in tree.nodes if n.bl_idname == "CompositorNodeOutputFile"]:
                tree.nodes.remove(node)
                removed += 1
    return removed


def samples_of(scene):
    engine = scene.render.engine
    if engine == "CYCLES":
        return scene.cycles.samples
    if engine == "BLENDER_EEVEE":
        return scene.eevee.taa_render_samples
    if engine == "BLENDER_WORKBENCH":
        return int(scene.display.render_aa) if scene.display.render_aa.isdigit() else 1
    return None


def settings_of(scene):
    """The file's own render settings, as the API shows them."""
    render = scene.render
    image = render.image_settings
    return {
        "scene": scene.name,
        "engine": ENGINES.get(render.engine, render.engine.lower()),
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "fps": round(render.fps / render.fps_base, 3),
        "width": render.resolution_x * render.resolution_percentage // 100,
        "height": render.resolution_y * render.resolution_percentage // 100,
        "samples": samples_of(scene),
        "film_transparent": bool(render.film_transparent),
        "output_format": FILE_FORMATS.get(image.file_format, "png"),
        "file_format": image.file_format,
        "color_mode": image.color_mode,
        "compositing": bool(render.use_compositing and scene.use_nodes and scene.node_tree is not None),
        "camera": scene.camera.name if scene.camera is not None else None,
        "blender": bpy.app.version_string,
    }


def substitutions(scene):
    """What this farm cannot do as the file asks, and does instead (warnings)."""
    changes = []
    engine = scene.render.engine
    if engine == "CYCLES":
        if scene.cycles.device != "CPU":
            changes.append("Cycles renders on the CPU here (the file asks for the GPU; workers have none)")
        denoise = scene.cycles.use_denoising or any(layer.cycles.denoising_store_passes for layer in scene.view_layers)
        if denoise:
            changes.append("denoising is off: this farm's Blender has no OpenImageDenoise")
    elif engine not in ENGINES:
        fail(f"The render engine {engine!r} (an add-on) is not available on this farm; use Cycles, EEVEE or Workbench.")
    if scene.frame_step != 1:
        changes.append(f"every frame of the range is rendered (the file's frame step is {scene.frame_step})")
    return changes


def inspect(scene):
    report = {
        "settings": settings_of(scene),
        "refused": refusals(),
        "missing_files": outside_files(),
        "substitutions": substitutions(scene) if scene.camera is not None else [],
    }
    print("RENDERFARM_INSPECTION " + json.dumps(report), flush=True)


def probe(scene, scratch):
    """Render the file's first frame once as a chunk would (the farm's settings, nothing written) and say how
    long it took; the worker stops waiting (and kills Blender) past its own limit."""
    if refusals():
        return
    confine_caches(scratch)
    remove_file_outputs()
    if scene.render.engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.use_denoising = False
    scene.frame_set(scene.frame_start)
    started = time.monotonic()
    try:
        bpy.ops.render.render()
    except RuntimeError:
        return  # the chunks will say why
    print(f"RENDERFARM_SPEED {time.monotonic() - started:.3f}", flush=True)


def apply_output(render, fmt, film_transparent):
    """The frame format the job stores: PNG keeps the file's bit depth and alpha, EXR is RGBA half float."""
    image = render.image_settings
    file_format, depth = image.file_format, image.color_depth
    if fmt == "exr":
        image.file_format = "OPEN_EXR"
        image.color_mode = "RGBA"
        image.color_depth = depth if file_format in {"OPEN_EXR", "OPEN_EXR_MULTILAYER"} else "16"
    elif fmt == "jpeg":
        image.file_format = "JPEG"
        image.color_mode = "RGB"
        if file_format != "JPEG":
            image.quality = 90
    else:
        image.file_format = "PNG"
        image.color_mode = "RGBA" if film_transparent else "RGB"
        image.color_depth = depth if file_format == "PNG" and depth in {"8", "16"} else "8"
    return image


def override(render, scene, cfg):
    """The job's overrides of the file, each reported."""
    changed = []
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    if cfg.get("width") and cfg["width"] != width:
        changed.append(f"width {cfg['width']} (the file's is {width})")
    if cfg.get("height") and cfg["height"] != height:
        changed.append(f"height {cfg['height']} (the file's is {height})")
    if cfg.get("width") or cfg.get("height"):
        render.resolution_x = cfg.get("width") or width
        render.resolution_y = cfg.get("height") or height
        render.resolution_percentage = 100
    if cfg.get("samples"):
        engine, own = render.engine, samples_of(scene)
        if engine == "CYCLES":
            scene.cycles.samples = cfg["samples"]
        elif engine == "BLENDER_EEVEE":
            scene.eevee.taa_render_samples = cfg["samples"]
        if engine == "BLENDER_WORKBENCH":
            warn("samples do not apply to Workbench; the file's anti-aliasing is used")
        elif cfg["samples"] != own:
            changed.append(f"samples {cfg['samples']} (the file's is {own})")
    if changed:
        warn("the job overrides the file: " + ", ".join(changed))


def runs(frames):
    """Consecutive frames as (first, last) pairs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    pairs = []
    for frame in frames:
        if pairs and frame == pairs[-1][1] + 1:
            pairs[-1][1] = frame
        else:
            pairs.append([frame, frame])
    return pairs


def serve(scene):
    """Render each chunk the worker sends (one JSON line on the input) until the input ends."""
    while line := sys.stdin.readline():
        command = json.loads(line)
        seq, frames = int(command["seq"]), [int(f) for f in command["frames"]]
        scene.render.filepath = str(command["output"])
        print(f"RENDERFARM_CHUNK {seq} frames {len(frames)}", flush=True)
        for first, last in runs(frames):
            scene.frame_start, scene.frame_end = first, last
            try:
                bpy.ops.render.render(animation=True)
            except RuntimeError as exc:
                fail(str(exc).strip().removeprefix("Error: "))
        print(f"RENDERFARM_DONE {seq}", flush=True)


def main():
    cfg = json.loads(sys.argv[sys.argv.index("--") + 1])
    if bpy.data.filepath != cfg["scene"]:
        fail("The file is not a Blender scene Blender could open.")
    scene = bpy.context.scene
    if cfg.get("mode") == "inspect":
        inspect(scene)
        if scene.camera is not None and scene.render.engine in ENGINES:
            probe(scene, cfg["scratch"])
        return
    problems = refusals()
    outside = outside_files()
    if outside and cfg.get("missing_files", "fail") == "fail":
        problems += describe(outside)
    if problems:
        refuse(problems)
    if outside:
        warn("rendered without files it reads from outside itself: " + listed(describe(outside)))
    if scene.camera is None:
        fail(f"Scene {scene.name!r} has no active camera.")
    for change in substitutions(scene):
        warn(change)
    confine_caches(cfg["scratch"])
    if remove_file_outputs():
        warn("the compositor's File Output nodes are not run (the farm stores the frames itself)")
    render = scene.render
    if scene.render.engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.use_denoising = False
        for layer in scene.view_layers:
            layer.cycles.denoising_store_passes = False
    override(render, scene, cfg)
    render.filepath = cfg["output"]
    render.use_file_extension = True
    render.use_overwrite = True
    render.use_placeholder = False
    render.use_persistent_data = True  # keep the scene's data between the chunk's frames
    image = apply_output(render, cfg["format"], render.film_transparent)
    scene.frame_start, scene.frame_end, scene.frame_step = cfg["first"], cfg["last"], 1
    bpy.app.handlers.render_write.append(report_saved)
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    print(
        f"RENDERFARM_READY frames {cfg['first']}-{cfg['last']} {width}x{height} {render.engine} "
        f"{samples_of(scene)} samples {image.file_format} {image.color_mode}",
        flush=True,
    )
    if cfg.get("mode") == "serve":
        serve(scene)


main()
