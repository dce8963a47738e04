"""Blender script for the "render what the .blend says" tests: scenes as an artist saves them, each with its own
settings the farm must keep. Built from the demo scene, in one Blender run:

    blender -b --factory-startup --python tests/support/artist_scenes.py -- DEMO.blend OUTDIR TEXTURE.png

OUTDIR gets (all 64x36 unless said):
- cycles_alpha.blend  Cycles, 6 samples, a transparent film, PNG RGBA 8-bit, frames 3-38 (a 36-frame range)
- eevee.blend         EEVEE, 4 samples, frames 1-3
- glare.blend         Cycles, 4 samples, the compositor on with a Fog Glow glare, frames 1-2
- unpacked.blend      Cycles, 4 samples, a material reading TEXTURE.png from its path (not packed), frames 1-2
None asks for denoising (this farm's Blender has none), so Blender renders each file as the farm must.
"""

import sys

import bpy


def fresh(demo):
    bpy.ops.wm.open_mainfile(filepath=demo)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 36, 100
    scene.cycles.use_denoising = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    return scene


def save(outdir, name):
    bpy.ops.wm.save_as_mainfile(filepath=f"{outdir}/{name}.blend", relative_remap=False)


def main():
    demo, outdir, texture = sys.argv[sys.argv.index("--") + 1 :][:3]

    scene = fresh(demo)
    scene.cycles.samples = 6
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"
    scene.frame_start, scene.frame_end = 3, 38
    save(outdir, "cycles_alpha")

    scene = fresh(demo)
    scene.render.engine = "BLENDER_EEVEE"
    scene.eevee.taa_render_samples = 4
    scene.frame_start, scene.frame_end = 1, 3
    save(outdir, "eevee")

    scene = fresh(demo)
    scene.cycles.samples = 4
    scene.frame_start, scene.frame_end = 1, 2
    scene.use_nodes = True
    tree = scene.node_tree
    layers, composite = tree.nodes["Render Layers"], tree.nodes["Composite"]
    glare = tree.nodes.new("CompositorNodeGlare")
    glare.glare_type, glare.quality, glare.threshold = "FOG_GLOW", "LOW", 0.2
    tree.links.new(layers.outputs["Image"], glare.inputs["Image"])
    tree.links.new(glare.outputs["Image"], composite.inputs["Image"])
    scene.render.use_compositing = True
    save(outdir, "glare")

    scene = fresh(demo)
    scene.cycles.samples = 4
    scene.frame_start, scene.frame_end = 1, 2
    image = bpy.data.images.load(texture)
    mat = bpy.data.materials.new("Textured")
    mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    mat.node_tree.links.new(node.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    next(o for o in bpy.data.objects if o.type == "MESH").data.materials.append(mat)
    save(outdir, "unpacked")


main()
