"""The face stage of the preprocessing contract: faces found and cropped the same way in training and prediction.

:mod:`deepfake.faces.detect` finds and crops faces in one image, with BlazeFace (:mod:`~deepfake.faces.blazeface`)
and aligned crops (:mod:`~deepfake.faces.align`), or dlib's HOG (:mod:`~deepfake.faces.hog`) for older models;
:mod:`deepfake.faces.dataset` crops a whole dataset once, with a cache on disk; ``python -m deepfake.faces SRC DST``
writes the crops of a folder of images or videos for people to look at or to train elsewhere.
"""

from deepfake.faces.detect import DETECTOR, Face, FaceStage, crop_face, face_crops, find_faces, main_face, warm_up

__all__ = ["DETECTOR", "Face", "FaceStage", "crop_face", "face_crops", "find_faces", "main_face", "warm_up"]
