"""A small animated demo scene, built with Blender's Python (no binary files in the repository).

    blender -b --factory-startup --python scenes/demo_scene.py -- OUT.blend [WIDTH HEIGHT FRAMES]

Three coloured objects move and turn over FRAMES frames (24 by default) in front of a camera, lit by a
sun, on a ground plane; 320x180 by default. Everything is in the one .blend (nothing to pack).
"""

import math
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1 :]
out = args[0]
width, height, frames = (int(a) for a in (args[1:4] if len(args) >= 4 else (320, 180, 24)))

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, frames
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
scene.render.engine = "CYCLES"
scene.cycles.samples = 16


def material(name, rgb):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    return mat


def animate(obj, start, end, spin):
    obj.location = start
    obj.rotation_euler = (0, 0, 0)
    obj.keyframe_insert("location", frame=1)
    obj.keyframe_insert("rotation_euler", frame=1)
    obj.location = end
    obj.rotation_euler = (0, spin, spin)
    obj.keyframe_insert("location", frame=frames)
    obj.keyframe_insert("rotation_euler", frame=frames)


bpy.ops.mesh.primitive_plane_add(size=30, location=(0, 0, -1))
bpy.context.object.data.materials.append(material("ground", (0.6, 0.6, 0.6)))
for name, add, rgb, start, end in (
    ("cube", bpy.ops.mesh.primitive_cube_add, (0.8, 0.1, 0.1), (-3, 0, 0), (3, 1, 0)),
    ("sphere", bpy.ops.mesh.primitive_uv_sphere_add, (0.1, 0.6, 0.9), (2, -1, 0), (-2, 0, 1.5)),
    ("cone", bpy.ops.mesh.primitive_cone_add, (0.9, 0.8, 0.1), (0, 2, 2), (0, -1, 0)),
):
    add(location=start)
    obj = bpy.context.object
    obj.name = name
    obj.data.materials.append(material(name, rgb))
    animate(obj, start, end, math.pi)

bpy.ops.object.light_add(type="SUN", location=(0, 0, 10), rotation=(0.5, 0.3, 0))
bpy.context.object.data.energy = 4
bpy.ops.object.camera_add(location=(0, -12, 4), rotation=(math.radians(75), 0, 0))
scene.camera = bpy.context.object
world = bpy.data.worlds.new("sky")
world.color = (0.25, 0.35, 0.5)
scene.world = world
bpy.ops.wm.save_as_mainfile(filepath=out)
