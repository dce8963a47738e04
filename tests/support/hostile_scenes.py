"""Blender script for the security tests: scene files that try, each its own way, to run code or to reach
files outside their scratch directory. Built from the demo scene (so each renders), in one Blender run:

    blender -b --factory-startup --python tests/support/hostile_scenes.py -- DEMO.blend OUTDIR CONFIG_JSON

CONFIG_JSON: {"outside": "<a directory outside any scratch>", "port": <a TCP port listening on 127.0.0.1>,
"texture": "<an image file on the worker>"}. OUTDIR gets:
- freestyle.blend  Freestyle in Python Scripting mode whose style module (a text block in the file) runs
                   escape_probe.py: reads other processes' environments, opens sockets, writes outside its
                   directory, and prints what it got as one line `HOSTILE_REPORT <json>`.
- driver.blend     a scripted driver whose expression would write `<outside>/driver-ran`.
- fluid_relative.blend / fluid_absolute.blend  a smoke simulation whose cache directory is `//../escape-fluid`
                   (next to the scratch directory) / `<outside>/fluid-absolute`.
- texture.blend    a material reading the image at `texture` by its absolute path (not packed).
"""

import json
import sys
from pathlib import Path

import bpy

PROBE = Path(__file__).with_name("escape_probe.py").read_text()


def fresh(demo):
    bpy.ops.wm.open_mainfile(filepath=demo)
    return bpy.context.scene


def save(outdir, name):
    bpy.ops.wm.save_as_mainfile(filepath=f"{outdir}/{name}.blend", relative_remap=False)  # paths as written


def freestyle(demo, outdir, config):
    scene = fresh(demo)
    text = bpy.data.texts.new("style_module.py")
    text.write(PROBE + f"\nprint(report_line({config!r}), flush=True)\n")
    scene.render.use_freestyle = True
    layer = scene.view_layers[0]
    layer.use_freestyle = True
    layer.freestyle_settings.mode = "SCRIPT"
    module = layer.freestyle_settings.modules.new()
    module.script = text
    module.use = True
    save(outdir, "freestyle")


def driver(demo, outdir, config):
    fresh(demo)
    target = next(o for o in bpy.data.objects if o.type == "MESH")
    drv = target.driver_add("location", 2).driver
    drv.type = "SCRIPTED"
    drv.expression = f"open({config['outside'] + '/driver-ran'!r}, 'w').write('x') and 0"
    save(outdir, "driver")


def fluid(demo, outdir, name, cache_directory):
    fresh(demo)
    bpy.ops.mesh.primitive_cube_add(size=4, location=(0, 0, 1))
    domain = bpy.context.object
    mod = domain.modifiers.new("Fluid", "FLUID")
    mod.fluid_type = "DOMAIN"
    settings = mod.domain_settings
    settings.domain_type = "GAS"
    settings.resolution_max = 16
    settings.cache_type = "REPLAY"
    settings.cache_directory = cache_directory
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(0, 0, 0))
    flow = bpy.context.object
    fmod = flow.modifiers.new("Fluid", "FLUID")
    fmod.fluid_type = "FLOW"
    fmod.flow_settings.flow_type = "SMOKE"
    domain.display_type = "WIRE"
    save(outdir, name)


def texture(demo, outdir, config):
    fresh(demo)
    image = bpy.data.images.load(config["texture"])
    mat = bpy.data.materials.new("Stolen")
    mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    mat.node_tree.links.new(node.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    next(o for o in bpy.data.objects if o.type == "MESH").data.materials.append(mat)
    save(outdir, "texture")


def main():
    demo, outdir, raw = sys.argv[sys.argv.index("--") + 1 :][:3]
    config = json.loads(raw)
    freestyle(demo, outdir, config)
    driver(demo, outdir, config)
    fluid(demo, outdir, "fluid_relative", "//../escape-fluid")
    fluid(demo, outdir, "fluid_absolute", config["outside"] + "/fluid-absolute")
    texture(demo, outdir, config)


main()
