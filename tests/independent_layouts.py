#!/usr/bin/env python3
"""Writes small copies of every dataset layout mer reads (CASME II in both frame layouts, SAMM, SMIC-HS,
SMIC-E, CAS(ME)^3 A and C, 4DME, MMEW) from this script's own description of them, for the readers'
independent-writer tests (worker/tests/independent_writer.rs). Nothing here comes from mer's code: the
layouts are written as the datasets' releases and public loaders (the MEB framework's dataset module)
describe them, with openpyxl for the workbooks and Pillow for the frames (JPEG files that decode).

    python tests/independent_layouts.py OUT_DIR

OUT_DIR gets one folder per layout (`good/<layout>`) read without error, one folder per planted fault
(`faults/<name>`), and `expected.json`: for every good layout the clips a reader must return (dataset,
subject, filename, emotion, onset, apex, offset, whether the apex is estimated, the frames present) and for
every fault the substrings its error must contain (the file and the row, the field).
"""
import json
import os
import sys

import openpyxl
from PIL import Image


def workbook(path, header, rows, sheet=None, extra_sheets=()):
    wb = openpyxl.Workbook()
    ws = wb.active
    for name in extra_sheets:
        # A first sheet that is not the labels, as some releases have.
        ws.title = name
        ws.append(["notes"])
        ws = wb.create_sheet(sheet or "Sheet1")
    if sheet:
        ws.title = sheet
    ws.append(header)
    for r in rows:
        ws.append(r)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wb.save(path)


def frames(folder, numbers, name=lambda n: f"{n}.jpg", color=True):
    os.makedirs(folder, exist_ok=True)
    for n in numbers:
        mode, fill = ("RGB", (n % 200, 80, 120)) if color else ("L", n % 200)
        Image.new(mode, (24, 20), fill).save(os.path.join(folder, name(n)), quality=90)


# The 3-class scheme as cross-dataset work reads these sets: happiness positive (1), surprise (2), the
# negative emotions negative (0); others, repression and mixed labels are left out (None).
MEGC3 = {
    "casme2": {"happiness": 1, "surprise": 2, "disgust": 0, "repression": 0},
    "samm": {"happiness": 1, "surprise": 2, "anger": 0, "contempt": 0, "disgust": 0, "fear": 0, "sadness": 0},
    "smic": {"positive": 1, "surprise": 2, "negative": 0},
    "casme3a": {"happy": 1, "surprise": 2, "disgust": 0, "fear": 0, "anger": 0, "sad": 0},
    "casme3c": {},
    "4dme": {"positive": 1, "surprise": 2, "negative": 0},
    "mmew": {"happiness": 1, "surprise": 2, "disgust": 0, "fear": 0, "sadness": 0, "anger": 0},
}


def clip(dataset, subject, filename, emotion, onset, apex, offset, present, estimated=False,
         objective=None):
    return {
        "dataset": dataset, "subject": subject, "filename": filename, "emotion": emotion,
        "onset": onset, "apex": apex, "offset": offset, "apex_estimated": estimated,
        "frames": sorted(present), "megc3": MEGC3[dataset].get(emotion.lower()),
        "objective_class": objective,
    }


def casme2(root, folder="CASME2_RAW_selected", prefix="img"):
    """CASME II: the coding workbook, one header row, read by position (Subject as a plain number, Filename,
    an empty column, OnsetFrame, ApexFrame, OffsetFrame, an empty column, Action Units, Estimated Emotion);
    the objective classes in their own workbook (a number or a Roman numeral); frames imgN.jpg without zero
    padding (img9 sorts before img10), or reg_imgN.jpg under Cropped/."""
    header = ["Subject", "Filename", "Unnamed: 2", "OnsetFrame", "ApexFrame", "OffsetFrame", "Unnamed: 6",
              "Action Units", "Estimated Emotion"]
    rows = [
        [1, "EP02_01f", None, 9, 10, 12, None, "12", "happiness"],
        [1, "EP03_02", None, 96, 100, 104, None, "1+2", "surprise"],
        [17, "EP01_12", None, 40, 41, 43, None, "4+9", "disgust"],
    ]
    workbook(os.path.join(root, "CASME2-coding-20140508.xlsx"), header, rows)
    workbook(os.path.join(root, "CASME2-ObjectiveClasses.xlsx"), ["Subject", "Filename", "Objective Class"],
             [[1, "EP02_01f", 1], [1, "EP03_02", "II"], [17, "EP01_12", "Class III"]])
    present = {("sub01", "EP02_01f"): range(9, 13), ("sub01", "EP03_02"): range(96, 105),
               ("sub17", "EP01_12"): range(40, 44)}
    for (s, f), ns in present.items():
        frames(os.path.join(root, folder, s, f), ns, name=lambda n: f"{prefix}{n}.jpg")
    return [
        clip("casme2", "sub01", "EP02_01f", "happiness", 9, 10, 12, present[("sub01", "EP02_01f")], objective=1),
        clip("casme2", "sub01", "EP03_02", "surprise", 96, 100, 104, present[("sub01", "EP03_02")], objective=2),
        clip("casme2", "sub17", "EP01_12", "disgust", 40, 41, 43, present[("sub17", "EP01_12")], objective=3),
    ]


def casme2_cropped(root):
    return casme2(root, folder="Cropped", prefix="reg_img")


def samm(root):
    """SAMM: thirteen preamble rows, the header on row 14, clips from row 15; subject folders three-digit
    (006) while the composite writes 6; frame numbers padded to 5 digits in one clip and 4 in another."""
    preamble = [["SAMM micro-movement FACS codes"]] + [[] for _ in range(12)]
    header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
              "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
    rows = [
        ["006", "006_1_2", 1, 5562, 5566, 5570, 9, "Micro - 1/2", "R12", "Happiness", 1, ""],
        ["007", "007_3_1", 3, 998, 1001, 1004, 7, "Micro - 1/2", "4", "Anger", 3, "quick"],
    ]
    path = os.path.join(root, "SAMM_Micro_FACS_Codes_v2.xlsx")
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in preamble + [header] + rows:
        ws.append(r)
    os.makedirs(root, exist_ok=True)
    wb.save(path)
    a, b = range(5560, 5573), range(996, 1007)
    frames(os.path.join(root, "SAMM", "006", "006_1_2"), a, name=lambda n: f"006_{n:05d}.jpg", color=False)
    frames(os.path.join(root, "SAMM", "007", "007_3_1"), b, name=lambda n: f"007_{n:04d}.jpg", color=False)
    return [
        clip("samm", "6", "006_1_2", "Happiness", 5562, 5566, 5570, a, objective=1),
        clip("samm", "7", "007_3_1", "Anger", 998, 1001, 1004, b, objective=3),
    ]


def smic(root):
    """SMIC-HS, original release: no workbook; HS/sN/micro/<class>/sN_xx_NN/reg_imageNNNNNN.bmp holding only
    the micro-expression's frames (onset the first, offset the last); no apex annotated, so the middle frame
    (index (n - 1) // 2 of the sorted frames) is taken and marked estimated."""
    clips = [("s1", "negative", "s1_ne_01", range(46587, 46597)),
             ("s1", "surprise", "s1_sur_02", range(51200, 51211)),
             ("s12", "positive", "s12_po_03", range(7001, 7009))]
    out = []
    for subj, cls, name, ns in clips:
        frames(os.path.join(root, "HS", subj, "micro", cls, name), ns, name=lambda n: f"reg_image{n:06d}.bmp")
        ns = list(ns)
        n = int(subj[1:])
        out.append(clip("smic", f"s{n:02d}", f"s{n:02d}" + name[len(subj):], cls, ns[0], ns[(len(ns) - 1) // 2],
                        ns[-1], ns, estimated=True))
    # The reader lists subjects in folder order and classes in negative, positive, surprise order.
    return out


def smic_e(root):
    """SMIC-E: SMIC-HS-E_annotation.xlsx (Subject, Filename, OnsetF, OffsetF, Emotion) and
    SMIC-HS-E/sNN/sN_xx_NN/imageN.jpg with frames of context around the clip; apex the middle of the frames
    from onset to offset, estimated."""
    workbook(os.path.join(root, "SMIC-HS-E_annotation.xlsx"), ["Subject", "Filename", "OnsetF", "OffsetF", "Emotion"],
             [["s3", "s3_sur_01", 308866, 308874, "surprise"], ["s3", "s3_ne_02", 10, 15, "negative"]])
    a, b = range(308860, 308880), range(5, 21)
    frames(os.path.join(root, "SMIC-HS-E", "s03", "s3_sur_01"), a, name=lambda n: f"image{n}.jpg")
    frames(os.path.join(root, "SMIC-HS-E", "s03", "s3_ne_02"), b, name=lambda n: f"image{n}.jpg")
    return [
        clip("smic", "s03", "s03_sur_01", "surprise", 308866, 308870, 308874, a, estimated=True),
        clip("smic", "s03", "s03_ne_02", "negative", 10, 12, 15, b, estimated=True),
    ]


def casme3a(root):
    """CAS(ME)^3 part A: the label workbook's `label` sheet; frames <Subject>/<Filename>/color/<N>.jpg.
    Quirks: the same Filename twice in one subject (told apart by onset), a dropped frame in a clip."""
    book = os.path.join(root, "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    rows = [
        ["spNO.1", "a", 10, 13, 16, "4+7", 1, "disgust"],
        ["spNO.1", "a", 40, 42, 45, "12", 2, "happy"],
        ["spNO.1", "b", 3, 5, 8, "1+2", 3, "surprise"],
        ["spNO.2", "a", 100, 104, 109, "4", 4, "others"],
    ]
    workbook(book, header, rows, sheet="label", extra_sheets=["readme"])
    present = {
        ("spNO.1", "a"): list(range(1, 50)),
        ("spNO.1", "b"): list(range(1, 12)),
        # Frame 106 dropped inside the clip 100..109.
        ("spNO.2", "a"): [n for n in range(95, 115) if n != 106],
    }
    for (s, f), ns in present.items():
        frames(os.path.join(root, s, f, "color"), ns)
        os.makedirs(os.path.join(root, s, f, "depth"), exist_ok=True)
    return [
        clip("casme3a", "spNO.1", "a_10", "disgust", 10, 13, 16, present[("spNO.1", "a")], objective=1),
        clip("casme3a", "spNO.1", "a_40", "happy", 40, 42, 45, present[("spNO.1", "a")], objective=2),
        clip("casme3a", "spNO.1", "b", "surprise", 3, 5, 8, present[("spNO.1", "b")], objective=3),
        clip("casme3a", "spNO.2", "a", "others", 100, 104, 109, present[("spNO.2", "a")], objective=4),
    ]


def casme3c(root):
    """CAS(ME)^3 part C: sub, count, au, onset, offset (no apex: the middle frame); frames under ME_C/."""
    book = os.path.join(root, "CAS(ME)3_part_C_ME.xlsx")
    workbook(book, ["sub", "count", "au", "onset", "offset"], [[1, 1, "4,7", 20, 31], [12, 3, "12", 5, 9]])
    frames(os.path.join(root, "ME_C", "01", "1", "color"), range(15, 40))
    frames(os.path.join(root, "ME_C", "12", "3", "color"), range(1, 12))
    return [
        clip("casme3c", "01", "1", "", 20, 25, 31, list(range(15, 40)), estimated=True),
        clip("casme3c", "12", "3", "", 5, 7, 9, list(range(1, 12)), estimated=True),
    ]


def fourdme(root):
    """4DME: the labelling workbook; 2D gray frames gray_micro/<sub_ID>/<fold_name>/ (names with a number)."""
    book = os.path.join(root, "4DME_Labelling_Micro_release v1.xlsx")
    header = ["sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset", "AUs"]
    rows = [
        ["S01", "S01_fold_1", "Positive", 12, 15, 19, "AU12"],
        ["S01", "S01_fold_2", "Negative+Surprise", 4, 6, 9, "AU4+AU1(k)"],
        ["S07", "S07_fold_1", "Surprise", 30, 33, 37, "AU1+AU2"],
    ]
    workbook(book, header, rows)
    name = lambda n: f"frame_{n:04d}.jpg"
    frames(os.path.join(root, "gray_micro", "S01", "S01_fold_1"), range(10, 22), name, color=False)
    frames(os.path.join(root, "gray_micro", "S01", "S01_fold_2"), range(1, 12), name, color=False)
    frames(os.path.join(root, "gray_micro", "S07", "S07_fold_1"), range(28, 40), name, color=False)
    return [
        clip("4dme", "S01", "S01_fold_1", "Positive", 12, 15, 19, list(range(10, 22))),
        clip("4dme", "S01", "S01_fold_2", "Negative+Surprise", 4, 6, 9, list(range(1, 12))),
        clip("4dme", "S07", "S07_fold_1", "Surprise", 30, 33, 37, list(range(28, 40))),
    ]


def mmew(root):
    """MMEW: the workbook; frames Micro_Expression/<emotion>/<Filename>/<N>.jpg, the emotion a folder."""
    book = os.path.join(root, "MMEW_Micro_Exp.xlsx")
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
              "Estimated Emotion", "remarks"]
    rows = [
        ["S01", "S01_0101", 2, 7, 14, "AU12", "happiness", ""],
        ["S01", "S01_0102", 1, 4, 9, "AU4", "disgust", "weak"],
        ["S30", "S30_0201", 3, 6, 10, "AU1+AU2", "surprise", ""],
    ]
    workbook(book, header, rows)
    frames(os.path.join(root, "Micro_Expression", "happiness", "S01_0101"), range(1, 16))
    frames(os.path.join(root, "Micro_Expression", "disgust", "S01_0102"), range(1, 11))
    frames(os.path.join(root, "Micro_Expression", "surprise", "S30_0201"), range(1, 12))
    return [
        clip("mmew", "S01", "S01_0101", "happiness", 2, 7, 14, list(range(1, 16))),
        clip("mmew", "S01", "S01_0102", "disgust", 1, 4, 9, list(range(1, 11))),
        clip("mmew", "S30", "S30_0201", "surprise", 3, 6, 10, list(range(1, 12))),
    ]


def faults(out):
    """One planted fault per folder, and what its error must name."""
    found = {}

    def at(name):
        return os.path.join(out, "faults", name)

    # CAS(ME)^3 A: an onset that is not a number (row 3 of the label sheet).
    r = at("casme3a_bad_onset")
    workbook(os.path.join(r, "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"),
             ["Subject", "Filename", "Onset", "Apex", "Offset", "emotion"],
             [["spNO.1", "a", 1, 2, 3, "happy"], ["spNO.1", "b", "ten", 12, 14, "sad"]], sheet="label")
    frames(os.path.join(r, "spNO.1", "a", "color"), range(1, 5))
    found["casme3a_bad_onset"] = {"kind": "casme3a", "error": ["part_A_ME_label", "row 3", "Onset", "ten"]}

    # CAS(ME)^3 C: an offset before the onset (row 2).
    r = at("casme3c_offset_before_onset")
    workbook(os.path.join(r, "CAS(ME)3_part_C_ME.xlsx"), ["sub", "count", "au", "onset", "offset"],
             [[2, 1, "4", 30, 20]])
    found["casme3c_offset_before_onset"] = {"kind": "casme3c", "error": ["part_C_ME", "row 2", "offset"]}

    # 4DME: a release whose header lacks the Apex column.
    r = at("fourdme_no_apex_column")
    workbook(os.path.join(r, "4DME_Labelling_Micro_release v1.xlsx"),
             ["sub_ID", "fold_name", "Emotion", "Onset", "Offset"], [["S01", "f1", "Positive", 1, 5]])
    os.makedirs(os.path.join(r, "gray_micro"), exist_ok=True)
    found["fourdme_no_apex_column"] = {"kind": "fourdme", "error": ["4DME_Labelling", "row 1", "Apex"]}

    # MMEW: a clip whose folder sits under another emotion than its row says (row 2): read, then refused
    # with the folder it looked for and the row.
    r = at("mmew_wrong_emotion_folder")
    workbook(os.path.join(r, "MMEW_Micro_Exp.xlsx"),
             ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion"],
             [["S02", "S02_0301", 1, 3, 6, "fear"]])
    frames(os.path.join(r, "Micro_Expression", "sadness", "S02_0301"), range(1, 8))
    found["mmew_wrong_emotion_folder"] = {
        "kind": "mmew", "check": ["fear", "S02_0301", "is missing", "MMEW_Micro_Exp.xlsx:2"]}

    # CASME II: an onset that is not a number (row 3 of the coding workbook).
    r = at("casme2_bad_onset")
    workbook(os.path.join(r, "CASME2-coding-20140508.xlsx"),
             ["Subject", "Filename", "x", "OnsetFrame", "ApexFrame", "OffsetFrame", "x", "AU", "Estimated Emotion"],
             [[1, "EP01_01", None, 1, 2, 3, None, "12", "happiness"],
              [1, "EP01_02", None, "1o", 12, 14, None, "4", "disgust"]])
    frames(os.path.join(r, "CASME2_RAW_selected", "sub01", "EP01_01"), range(1, 4))
    found["casme2_bad_onset"] = {"kind": "casme2", "error": ["CASME2-coding", "row 3", "OnsetFrame", "1o"]}

    # CASME II: an apex cell of "/" (not annotated): read, then refused by the clip check with the row.
    r = at("casme2_slash_apex")
    workbook(os.path.join(r, "CASME2-coding-20140508.xlsx"),
             ["Subject", "Filename", "x", "OnsetFrame", "ApexFrame", "OffsetFrame", "x", "AU", "Estimated Emotion"],
             [[4, "EP12_01f", None, 20, "/", 25, None, "14", "repression"]])
    frames(os.path.join(r, "CASME2_RAW_selected", "sub04", "EP12_01f"), range(20, 26))
    found["casme2_slash_apex"] = {"kind": "casme2", "check": ["no apex annotated", "CASME2-coding-20140508.xlsx:2"]}

    # SAMM: a clip without an offset (spreadsheet row 15, the first after the header).
    r = at("samm_missing_offset")
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in [["preamble"]] + [[] for _ in range(12)] + [
            ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
             "Estimated Emotion"],
            ["011", "011_2_3", 2, 300, 305, None, "Fear"]]:
        ws.append(row)
    os.makedirs(r, exist_ok=True)
    wb.save(os.path.join(r, "SAMM_Micro_FACS_Codes_v2.xlsx"))
    found["samm_missing_offset"] = {"kind": "samm", "error": ["SAMM_Micro_FACS_Codes_v2", "row 15", "Offset Frame"]}

    # SMIC-HS: two frame files with the same number in one clip folder: refused naming both files.
    r = at("smic_duplicate_frame")
    folder = os.path.join(r, "HS", "s2", "micro", "positive", "s2_po_01")
    frames(folder, range(8, 14), name=lambda n: f"reg_image{n:06d}.bmp")
    frames(folder, [10], name=lambda n: f"reg_image{n}.bmp")
    found["smic_duplicate_frame"] = {
        "kind": "smic", "sample": "smic/s02/s02_po_01",
        "check": ["frame number 10 also used by", "reg_image000010.bmp"]}

    # SMIC-E: a row whose clip folder does not exist (row 2).
    r = at("smic_e_missing_folder")
    workbook(os.path.join(r, "SMIC-HS-E_annotation.xlsx"), ["Subject", "Filename", "OnsetF", "OffsetF", "Emotion"],
             [["s5", "s5_po_04", 100, 110, "positive"]])
    os.makedirs(os.path.join(r, "SMIC-HS-E", "s05"), exist_ok=True)
    found["smic_e_missing_folder"] = {
        "kind": "smic_e", "check": ["s5_po_04", "is missing", "SMIC-HS-E_annotation.xlsx:2"]}

    # CAS(ME)^3 A: the dropped frame of the good layout, refused by the clip check with the folder, the
    # frame and the row.
    found["casme3a_dropped_frame"] = {
        "kind": "casme3a", "root": "good/casme3a", "sample": "casme3a/spNO.2/a",
        "check": ["1 of the frames 100..109 are missing", "first: 106", "label_JpgIndex_v2.xlsx:5"]}
    return found


def main():
    out = sys.argv[1]
    expected = {"layouts": {}, "faults": {}}
    for name, write in [("casme2", casme2), ("casme2_cropped", casme2_cropped), ("samm", samm), ("smic", smic),
                        ("smic_e", smic_e), ("casme3a", casme3a), ("casme3c", casme3c), ("fourdme", fourdme),
                        ("mmew", mmew)]:
        expected["layouts"][name] = write(os.path.join(out, "good", name))
    expected["faults"] = faults(out)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
