"""Frame lists (`frames: "1-100x2,150,200-210"`): the parser, its normal form, and chunks over the listed frames."""

import copy

import pytest

from jobs.domain import MAX_FRAME_LIST, MAX_FRAMES_PER_JOB, FrameList, FrameListError, Job, chunks_problem


@pytest.mark.parametrize(
    ("text", "normal", "frames"),
    [
        ("150", "150", [150]),
        ("1-5", "1-5", [1, 2, 3, 4, 5]),
        ("1-7x3,10", "1-10x3", [1, 4, 7, 10]),
        ("1-10x3", "1-10x3", [1, 4, 7, 10]),
        ("1-11x3", "1-10x3", [1, 4, 7, 10]),  # the end is the last frame the step reaches
        ("5-5", "5", [5]),
        ("5-9x10", "5", [5]),
        ("1,2", "1-2", [1, 2]),
        ("1,5", "1,5", [1, 5]),
        ("1,5,6,7", "1,5-7", [1, 5, 6, 7]),
        (" 10 , 1-9 ", "1-10", list(range(1, 11))),  # any order, spaces around items
        ("1-9x2,2-10x2", "1-10", list(range(1, 11))),  # interleaved items merge into one run
        ("0", "0", [0]),
        ("99999", "99999", [99999]),
    ],
)
def test_a_list_parses_to_its_frames_and_normal_form(text, normal, frames):
    parsed = FrameList.parse(text)
    assert str(parsed) == normal and list(parsed) == frames and len(parsed) == len(frames)
    assert FrameList.parse(normal) == parsed  # the normal form is a fixed point


def test_the_issue_example_normalises_to_its_last_frames():
    frames = FrameList.parse("1-100x2,150,200-210")
    assert str(frames) == "1-99x2,150,200-210"
    assert len(frames) == 50 + 1 + 11 and (frames.first, frames.last) == (1, 210)
    assert not frames.contiguous and FrameList.parse("3-8").contiguous


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Give at least one frame"),
        ("   ", "Give at least one frame"),
        ("1,,2", "Item 2 of the frame list is empty"),
        ("1,2,", "Item 3 of the frame list is empty"),
        ("a", '"a" is not a frame'),
        ("5x2", '"5x2" is not a frame'),
        ("1-10x", '"1-10x" is not a frame'),
        ("1.5", '"1.5" is not a frame'),
        ("1-3\t", "is not a frame"),
        ("\u0661\u0662", "is not a frame"),  # Arabic-Indic digits: int() would read them, the syntax does not
        ("1-10x0", '"1-10x0": the step must be 1 or more'),
        ("1-10x-2", '"1-10x-2": the step must be 1 or more'),
        ("-5", '"-5": frame numbers are 0 to 99999'),
        ("10-100000", '"10-100000": frame numbers are 0 to 99999'),
        ("10-1", '"10-1": the range ends before it starts'),
        ("1-10,5", 'Frame 5 is listed twice ("1-10" and "5")'),
        ("1-100x2,51-99x10", 'Frame 51 is listed twice ("1-100x2" and "51-99x10")'),
        ("0-99999", f"A job renders at most {MAX_FRAMES_PER_JOB} frames; this list has 100000"),
        ("1-6000,10001-16000", f"A job renders at most {MAX_FRAMES_PER_JOB} frames; this list has 12000"),
        ("1" * (MAX_FRAME_LIST + 1), f"at most {MAX_FRAME_LIST} characters"),
        ("0-20000x4,1-20000x6", f"more than {MAX_FRAME_LIST} characters"),  # short to write, long to store
    ],
)
def test_bad_lists_are_refused_with_a_message_that_names_the_problem(text, says):
    with pytest.raises(FrameListError) as refused:
        FrameList.parse(text)
    assert says in str(refused.value)


def test_a_long_item_is_quoted_shortened():
    with pytest.raises(FrameListError) as refused:
        FrameList.parse("9" * 200)
    assert len(str(refused.value)) < 120


def test_positions_slices_and_membership_are_arithmetic():
    frames = FrameList.parse("1-99x2,150,200-210")
    assert (frames[0], frames[49], frames[50], frames[51], frames[-1]) == (1, 99, 150, 200, 210)
    assert str(frames[48:53]) == "97,99,150,200-201"
    assert list(frames[60:]) == [209, 210] and len(frames[62:]) == 0
    assert (frames.index(150), frames.index(201)) == (50, 52)
    assert 150 in frames and 2 not in frames and 151 not in frames
    with pytest.raises(ValueError, match="not in the list"):
        frames.index(2)
    with pytest.raises(IndexError):
        frames[62]


def test_a_frame_list_copies_and_compares_by_its_frames():
    frames = FrameList.parse("1-7x3,20")
    assert copy.deepcopy(frames) == frames and hash(copy.deepcopy(frames)) == hash(frames)
    assert FrameList.of([20, 1, 4, 7, 4]) == frames and FrameList.span(1, 3) != frames


def test_chunks_hold_chunk_size_frames_of_the_list_not_of_the_span(make_job):
    frames = FrameList.parse("1-100x2,150,200-210")
    job = make_job(frame_start=1, frame_end=210, chunk_size=20).replace(frame_list=frames)
    assert job.frames_total == 62 and job.chunks_total == 4
    chunks = job.new_chunks()
    assert [str(c.frames) for c in chunks] == ["1-39x2", "41-79x2", "81-99x2,150,200-208", "209-210"]
    assert [len(c.frames) for c in chunks] == [20, 20, 20, 2]
    assert [(c.frame_start, c.frame_end) for c in chunks] == [(1, 39), (41, 79), (81, 208), (209, 210)]
    assert [f for c in chunks for f in c.frames] == list(frames)
    assert chunks[3].frame_list is None  # a chunk of every frame between its ends keeps no list


def test_a_list_of_every_frame_is_held_as_the_plain_range(make_job):
    job = make_job(frame_start=3, frame_end=8).replace(frame_list=FrameList.parse("3-8"))
    assert job.frame_list is None and list(job.frames) == [3, 4, 5, 6, 7, 8]
    assert job.as_chunk().frame_list is None


def test_a_list_must_match_the_frames_ends(make_job):
    with pytest.raises(ValueError, match="does not run from"):
        make_job(frame_start=1, frame_end=10).replace(frame_list=FrameList.parse("1-7x3"))


def test_a_one_chunk_job_of_a_list_is_its_own_chunk_with_the_list(make_job):
    frames = FrameList.parse("1-7x3,10")
    job = make_job(frame_start=1, frame_end=10, chunk_size=5).replace(frame_list=frames)
    assert job.single_chunk and job.as_chunk().frames == frames and job.frames_total == 4


def test_too_many_chunks_are_refused_on_chunk_size():
    assert chunks_problem(1000, 1) is None
    field, message = chunks_problem(1001, 1)
    assert field == "chunk_size" and "1001 frames in chunks of 1 make 1001 chunks" in message


def test_job_frames_of_a_plain_range(make_job):
    job: Job = make_job(frame_start=10, frame_end=13)
    assert str(job.frames) == "10-13" and job.chunk_frames(0) == FrameList.span(10, 13)


def test_a_stored_list_is_parsed_once_per_text_and_reads_as_the_list_it_was():
    first = FrameList.stored("0-99990x10")
    assert FrameList.stored("0-99990x10") is first  # a job listing re-reads it from every item: parsed once
    assert list(first) == list(FrameList.parse("0-99990x10")) and str(first) == "0-99990x10"
    with pytest.raises(FrameListError):
        FrameList.stored("3,3")
