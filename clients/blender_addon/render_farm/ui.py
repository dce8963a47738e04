"""The add-on inside Blender: its preferences (API URL and key), the Render Farm panel in Render Properties, the
Submit and Cancel operators, and the timer that redraws the panel. It runs on Blender's main thread and never
waits on the network: a Submission's thread does that, and this side only reads its snapshots."""

import functools
import shutil
import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .client import ApiError, Client, one_line
from .submission import ERROR, FOLLOWING, UPLOADING, Submission, job_body, pack_resources

ADDON = __package__
REFRESH_SECONDS = 0.5  # how often the timer redraws the panel while a submission runs
POLL_SECONDS = 2.0  # how often the submission's thread asks the farm for the job
SUBMIT_POLL_SECONDS = 0.25  # how often the Submit operator looks whether its job exists yet
PRIORITIES = [
    ("normal", "Normal", "The farm's normal queue"),
    ("high", "High", "Before normal and low jobs (needs a key allowed high priority)"),
    ("low", "Low", "After every normal and high job"),
]

_submission = None  # the last Submission started in this Blender session: what the panel shows


def current():
    """The submission the panel shows (None before the first Submit); for scripts and tests."""
    return _submission


def preferences(context):
    return context.preferences.addons[ADDON].preferences


def refresh():
    """The panel's timer (bpy.app.timers): redraws Properties editors while the last submission runs, and stops
    (returns None) once it has ended. It only reads a snapshot: it never waits on the network."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas if window.screen else ():
            if area.type == "PROPERTIES":
                area.tag_redraw()
    if _submission is None or _submission.finished.is_set():
        return None
    return REFRESH_SECONDS


def _progress_percent(_window_manager) -> float:
    return 100.0 * _submission.snapshot().fraction if _submission is not None else 0.0


def _copy_scene_range(settings, context) -> None:
    if not settings.use_scene_range:
        settings.frame_start, settings.frame_end = context.scene.frame_start, context.scene.frame_end


class RenderFarmPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    api_url: StringProperty(
        name="API URL", default="http://127.0.0.1:8000", description="The render farm's address (make run prints it)"
    )
    api_key: StringProperty(
        name="API key",
        subtype="PASSWORD",
        description="Your API key (rk_...): kept in Blender's preferences, shown as dots, sent only to the API URL",
    )

    def draw(self, context):
        self.layout.prop(self, "api_url")
        self.layout.prop(self, "api_key")


class RenderFarmSettings(bpy.types.PropertyGroup):
    use_scene_range: BoolProperty(
        name="Scene's Frame Range",
        default=True,
        description="Render the scene's own frame range (the farm reads it from the file, and checks the file "
        "before accepting the job); off: the range below",
        update=_copy_scene_range,
    )
    frame_start: IntProperty(name="Frame Start", default=1, min=0, max=99999)
    frame_end: IntProperty(name="End", default=250, min=0, max=99999)
    frame_list: StringProperty(
        name="Frame List",
        description="Only these frames, in place of Frame Start and End: ranges, steps and single frames, as "
        "1-100x2,150 (the farm checks it)",
        maxlen=1024,
    )
    priority: EnumProperty(name="Priority", items=PRIORITIES, default="normal")
    chunk_size: IntProperty(
        name="Chunk Size", default=5, min=1, max=100, description="Frames per task: one Blender start renders these"
    )


class RENDER_OT_farm_submit(bpy.types.Operator):
    """Save a copy of this file with its resources packed, upload it and submit it to the render farm"""

    bl_idname = "render_farm.submit"
    bl_label = "Submit to Render Farm"

    @classmethod
    def poll(cls, context):
        if _submission is not None and not _submission.submitted.is_set():
            cls.poll_message_set("The last submission is still on its way to the farm")
            return False
        return True

    def execute(self, context):
        """From a script: returns once the job exists (or could not be submitted); the thread then follows it."""
        submission = self._start(context)
        if submission is None:
            return {"CANCELLED"}
        submission.submitted.wait()
        return self._outcome(submission)

    def invoke(self, context, event):
        """From the button: the upload and submit run on the submission's thread while Blender stays usable."""
        submission = self._start(context)
        if submission is None:
            return {"CANCELLED"}
        self._submission = submission
        self._timer = context.window_manager.event_timer_add(SUBMIT_POLL_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not self._submission.submitted.is_set():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._outcome(self._submission)

    def _start(self, context):
        """Save the packed copy's source (on this thread: bpy is not thread-safe) and start its Submission."""
        global _submission
        prefs, settings = preferences(context), context.scene.render_farm
        try:
            client = Client(prefs.api_url, prefs.api_key)
        except ApiError as exc:
            self.report({"ERROR"}, exc.message)
            return None
        listed = "" if settings.use_scene_range else settings.frame_list.strip()
        if not (settings.use_scene_range or listed) and settings.frame_end < settings.frame_start:
            self.report({"ERROR"}, "The last frame comes before the first")
            return None
        frames = None if settings.use_scene_range else (settings.frame_start, settings.frame_end)
        label = Path(bpy.data.filepath).stem or context.scene.name
        body = job_body(
            label=label,
            chunk_size=settings.chunk_size,
            priority=settings.priority,
            frame_range=frames,
            frame_list=listed or None,
        )
        workdir = Path(tempfile.mkdtemp(prefix="render-farm-"))
        copy = workdir / "scene.blend"
        try:  # a copy: the person's file on disk, its path and its unsaved state stay as they are
            bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True, relative_remap=True, check_existing=False)
        except RuntimeError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            self.report({"ERROR"}, f"Could not save a copy of the file: {one_line(exc)}")
            return None
        if _submission is not None:
            _submission.stop()  # the panel follows the new job; the old one goes on, in the console
        _submission = Submission(
            client=client,
            scene_copy=copy,
            body=body,
            pack=functools.partial(pack_resources, blender=bpy.app.binary_path),
            cleanup=functools.partial(shutil.rmtree, workdir, ignore_errors=True),
            poll_seconds=POLL_SECONDS,
        ).start()
        if not bpy.app.timers.is_registered(refresh):
            bpy.app.timers.register(refresh, first_interval=REFRESH_SECONDS, persistent=True)
        return _submission

    def _outcome(self, submission):
        snapshot = submission.snapshot()
        if snapshot.job is not None:
            frames = snapshot.job["progress"]["frames_total"]
            self.report({"INFO"}, f"Submitted job {snapshot.job_id} ({frames} frames)")
            return {"FINISHED"}
        self.report({"ERROR"} if snapshot.error else {"WARNING"}, snapshot.error or snapshot.line)
        return {"CANCELLED"}


class RENDER_OT_farm_cancel(bpy.types.Operator):
    """Cancel the render farm job (frames already rendered stay on the farm), or stop its upload"""

    bl_idname = "render_farm.cancel"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        return _submission is not None and _submission.snapshot().active

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        _submission.cancel()  # sent by the submission's thread, off Blender's
        self.report({"INFO"}, "Cancelling the render farm job")
        return {"FINISHED"}


class RENDER_PT_render_farm(bpy.types.Panel):
    bl_label = "Render Farm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context):
        layout, settings, scene = self.layout, context.scene.render_farm, context.scene
        layout.use_property_split, layout.use_property_decorate = True, False
        prefs = preferences(context)
        if not (prefs.api_url.strip() and prefs.api_key.strip()):
            layout.label(text="Set the API URL and key in the add-on's preferences", icon="ERROR")
        layout.prop(settings, "use_scene_range")
        if settings.use_scene_range:
            layout.label(text=f"Frames {scene.frame_start}-{scene.frame_end}, read from the file by the farm")
        else:
            column = layout.column(align=True)
            column.prop(settings, "frame_start")
            column.prop(settings, "frame_end")
            layout.prop(settings, "frame_list")
        layout.prop(settings, "priority")
        layout.prop(settings, "chunk_size")
        layout.operator(RENDER_OT_farm_submit.bl_idname, icon="EXPORT")
        if _submission is not None:
            self.draw_submission(context, _submission.snapshot())

    def draw_submission(self, context, snapshot):
        box = self.layout.box()
        box.label(text=snapshot.line, icon="ERROR" if snapshot.stage == ERROR else "RENDER_ANIMATION")
        if snapshot.stage in (UPLOADING, FOLLOWING) or snapshot.job is not None:
            if hasattr(box, "progress"):  # Blender 4.0 and later
                box.progress(factor=snapshot.fraction, type="BAR")
            else:
                box.prop(context.window_manager, "render_farm_progress", text="", slider=True)
        for warning in (snapshot.job or {}).get("warnings", [])[:3]:
            box.label(text=one_line(warning), icon="INFO")
        row = box.row()
        if snapshot.console_url:
            row.operator("wm.url_open", text="Open in Console", icon="URL").url = snapshot.console_url
        row.operator(RENDER_OT_farm_cancel.bl_idname, icon="CANCEL")


CLASSES = (
    RenderFarmPreferences,
    RenderFarmSettings,
    RENDER_OT_farm_submit,
    RENDER_OT_farm_cancel,
    RENDER_PT_render_farm,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.render_farm = PointerProperty(type=RenderFarmSettings)
    bpy.types.WindowManager.render_farm_progress = FloatProperty(
        name="Progress", subtype="PERCENTAGE", min=0.0, max=100.0, get=_progress_percent
    )


def unregister():
    global _submission
    if _submission is not None:
        _submission.stop()  # stop following; the job itself goes on
        _submission = None
    if bpy.app.timers.is_registered(refresh):
        bpy.app.timers.unregister(refresh)
    del bpy.types.WindowManager.render_farm_progress
    del bpy.types.Scene.render_farm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
