"""Blender script for the tests: a scene whose embedded script (a registered text block, run on load when
auto-run is allowed) would write MARKER.

    blender -b --factory-startup --python tests/support/autoexec_scene.py -- OUT.blend MARKER
"""

import sys

import bpy

out, marker = sys.argv[sys.argv.index("--") + 1 :][:2]
text = bpy.data.texts.new("startup.py")
text.write(f"open({marker!r}, 'w').write('the scene ran its own code')\n")
text.use_module = True  # "Register": Blender runs it when the file loads, if auto-run is allowed
bpy.ops.wm.save_as_mainfile(filepath=out)
