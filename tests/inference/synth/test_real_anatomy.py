"""The ``real`` synthetic anatomy: lobar vessel trees that branch and taper, fissures, attached lesions,
the real-lung template, determinism, and the measurement script."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from scipy import ndimage as ndi

from inference.synth import lobes, measure
from inference.synth.lungshape import load_template, template_path
from inference.synth.study import LesionRequest, generate_study

ATTACHED = [
    LesionRequest("nodule", texture="solid", morphology="round", location="juxtapleural", diameter_mm=10.0),
    LesionRequest("nodule", texture="solid", morphology="round", location="juxtavascular", diameter_mm=8.0),
    LesionRequest("nodule", texture="solid", morphology="round", location="perifissural", diameter_mm=7.0),
    LesionRequest("embolism", level="lobar", occlusive=True),
    LesionRequest("embolism", level="segmental", occlusive=False),
]


@pytest.fixture(scope="module")
def study():
    """A small non-contrast study with the real anatomy and no lesions (clean profile)."""
    return generate_study(31, profile="siemens_flash_b30f", contrast="none", size="small", lesions="none",
                          mimics=False, anatomy="real")


@pytest.fixture(scope="module")
def attached():
    """A small CTPA study with a juxtapleural, a juxtavascular and a perifissural nodule."""
    return generate_study(32, profile="siemens_flash_b30f", contrast="ctpa", size="small", lesions=ATTACHED,
                          mimics=False, anatomy="real")


def test_artery_trees_branch_taper_and_reach_the_pleura(study):
    """Test that each lung's artery tree bifurcates many times, obeys Murray's law, and ends near the pleura."""
    trees = study.extra["trees"]["peripheral"]
    assert len(trees) == 2
    for t in trees:
        kids = np.bincount(t.parent[t.parent >= 0], minlength=len(t))
        assert (kids >= 2).sum() > 150  # bifurcations
        assert t.depth.max() >= 10
        # Murray: a parent's radius ** 2.8 is the sum over its children; so radii never grow downstream
        has = t.parent >= 0
        assert np.all(t.radius[has] <= t.radius[t.parent[has]] + 1e-9)
        assert t.radius.max() > 3.0 and np.median(t.radius[t.leaf]) < 0.7
    # leaves reach the periphery: most leaf tips lie within 12 mm of the pleura
    vol = study.volume
    dist = ndi.distance_transform_edt(study.lung, sampling=vol.spacing_mm)
    shift = np.asarray(study.extra["body_to_patient_mm"])
    tips = np.concatenate([t.end[t.leaf] for t in trees]) + shift
    kji = np.round(vol.patient_to_voxel(tips)).astype(int)
    kji = np.clip(kji, 0, np.array(vol.shape) - 1)
    d = dist[tuple(kji.T)]
    assert np.mean(d < 12.0) > 0.5, np.percentile(d, [25, 50, 75])


def test_volume_vessels_branch_and_taper(study):
    """Test on the generated voxels (the same measurement as for real CT) that vessels branch and taper."""
    m = measure.measure_volume(study.volume.hu, study.volume.spacing_mm, measure_mm=2.5)
    assert 2.0 < m["lung_l"] < 8.0
    assert m["branch_per_l"] > 12, m
    assert m["r_d0"] > m["r_d60"] > 0, m
    assert -900 < m["hu_p50"] < -750, m
    assert 0.02 < m["frac_gt_-500"] < 0.2, m


def test_fissures_exist_and_separate_lobes(study):
    """Test that the fissures are denser than the parenchyma beside them and split the lungs into 5 lobes
    whose artery trees stay inside them."""
    vol, fis = study.volume, study.extra["fissures"]
    shift = np.asarray(study.extra["body_to_patient_mm"])
    kji = np.argwhere(study.lung)
    xyz = vol.voxel_to_patient(kji) - shift
    lobe = lobes.lobe_of(fis, xyz)
    frac = np.bincount(lobe, minlength=6)[1:] / len(lobe)
    assert np.all(frac > 0.03), frac  # RUL, RML, RLL, LUL, LLL all present
    # HU on the oblique fissures vs 5 mm above and below (parenchyma), at lung points away from vessels
    rng = np.random.default_rng(0)
    pts = xyz[rng.choice(len(xyz), 20000, replace=False)]
    side = (pts[:, 0] >= lobes.MIDLINE_X).astype(int)
    on = pts.copy()
    on[:, 2] = np.where(side == 0, lobes.oblique_z(fis, 0, pts[:, 0], pts[:, 1]),
                        lobes.oblique_z(fis, 1, pts[:, 0], pts[:, 1]))

    def hu_at(p):
        k = np.round(vol.patient_to_voxel(p + shift)).astype(int)
        inside = np.all((k >= 0) & (k < np.array(vol.shape)), axis=1)
        k = np.clip(k, 0, np.array(vol.shape) - 1)
        return vol.hu[tuple(k.T)].astype(float), inside & study.lung[tuple(k.T)]

    h0, ok0 = hu_at(on)
    hu_up, ok1 = hu_at(on + [0, 0, 5.0])
    hu_dn, ok2 = hu_at(on - [0, 0, 5.0])
    ok = ok0 & ok1 & ok2 & (h0 < -400) & (hu_up < -600) & (hu_dn < -600)
    assert ok.sum() > 200
    assert np.median(h0[ok] - 0.5 * (hu_up[ok] + hu_dn[ok])) > 25
    # arteries respect the lobes: few segments start and end in different lobes
    for t in study.extra["trees"]["peripheral"]:
        far = t.depth >= 4
        a, b = lobes.lobe_of(fis, t.start[far]), lobes.lobe_of(fis, t.end[far])
        assert np.mean(a != b) < 0.03


def test_attached_nodules_touch_pleura_vessel_and_fissure(attached):
    """Test that juxtapleural nodules touch the pleura, juxtavascular ones an artery, perifissural ones a
    fissure."""
    s = attached
    by_loc = {les["location"]: les for les in s.lesions if les["kind"] == "nodule"}
    assert set(by_loc) == {"juxtapleural", "juxtavascular", "perifissural"}
    nod = s.labels == 1
    lab, _ = ndi.label(nod)
    for loc, les in by_loc.items():
        k, j, i = np.round(les["center_voxel"]).astype(int)
        comp = lab == lab[k, j, i] if lab[k, j, i] else ndi.binary_dilation(nod, iterations=0)
        ring = ndi.binary_dilation(comp, iterations=2) & ~comp
        if loc == "juxtapleural":
            assert (~s.lung[ring]).any(), "juxtapleural nodule does not reach the pleura"
        elif loc == "juxtavascular":
            assert s.arteries[ring].any(), "juxtavascular nodule does not touch an artery"
        else:
            fis = s.extra["fissures"]
            shift = np.asarray(s.extra["body_to_patient_mm"])
            xyz = s.volume.voxel_to_patient(np.argwhere(ring)) - shift
            assert len(np.unique(lobes.lobe_of(fis, xyz))) >= 2, "perifissural nodule does not reach a fissure"


def test_emboli_sit_in_the_new_artery_trees(attached):
    """Test that lobar and segmental emboli are placed inside the opacified lobar artery trees."""
    s = attached
    emb = s.labels == 2
    assert emb.sum() > 10 and s.arteries[emb].mean() > 0.98
    assert sorted(les["level"] for les in s.lesions if les["kind"] == "embolism") == ["lobar", "segmental"]
    opac = s.volume.hu[s.arteries & (s.labels == 0)]
    assert np.median(opac) - np.median(s.volume.hu[emb]) > 150


def test_bronchi_have_air_lumen_and_soft_tissue_wall(study):
    """Test that large bronchi have air in the lumen and a wall denser than the lumen around it."""
    s = study
    shift = np.asarray(s.extra["body_to_patient_mm"])
    rng = np.random.default_rng(1)
    lumen_hu, wall_hu = [], []
    for t in s.extra["trees"]["bronchi"]:
        for i in np.flatnonzero(t.radius >= 2.0):
            c = 0.5 * (t.start[i] + t.end[i]) + shift
            d = t.end[i] - t.start[i]
            d /= np.linalg.norm(d) + 1e-9
            perp = np.cross(d, rng.normal(size=3))
            perp /= np.linalg.norm(perp) + 1e-9
            wall = c + perp * t.radius[i] * 1.15
            for p, acc in ((c, lumen_hu), (wall, wall_hu)):
                k = np.round(s.volume.patient_to_voxel(p)).astype(int)
                if np.all((k >= 0) & (k < np.array(s.volume.shape))):
                    acc.append(float(s.volume.hu[tuple(k)]))
    assert len(lumen_hu) > 20
    assert np.median(lumen_hu) < -750, np.median(lumen_hu)
    assert np.median(wall_hu) > np.median(lumen_hu) + 150, (np.median(wall_hu), np.median(lumen_hu))


def test_real_anatomy_is_deterministic_and_legacy_still_available():
    """Test that the same seed gives the same voxels and trees, and the legacy anatomy still generates."""
    a = generate_study(7, size="small", contrast="ctpa", lesions="both", anatomy="real")
    b = generate_study(7, size="small", contrast="ctpa", lesions="both", anatomy="real")
    assert a.volume.hu.tobytes() == b.volume.hu.tobytes() and a.lesions == b.lesions
    ta, tb = a.extra["trees"]["peripheral"][0], b.extra["trees"]["peripheral"][0]
    assert np.array_equal(ta.end, tb.end) and np.array_equal(ta.radius, tb.radius)
    old = generate_study(7, size="small", contrast="ctpa", lesions="none", anatomy="legacy")
    assert old.volume.shape == a.volume.shape and old.volume.hu.tobytes() != a.volume.hu.tobytes()
    assert "fissures" not in old.extra["trees"] and old.extra["fissures"] is None
    with pytest.raises(ValueError):
        generate_study(7, size="small", anatomy="cartoon")
    # the API default stays legacy until the committed models are retrained on the real anatomy
    assert inspect.signature(generate_study).parameters["anatomy"].default == "legacy"


def test_lung_template_is_small_and_has_two_lungs():
    """Test that the committed lung template is compact and holds a right and a left lung of adult size."""
    path = template_path()
    assert path.is_file() and path.stat().st_size < 300_000
    t = load_template()
    vox_l = t.step**3 / 1e6
    for side in (0, 1):
        vol_l = (t.sd[side] < 0).sum() * vox_l
        assert 0.8 < vol_l < 3.5, vol_l
    xr = np.argwhere(t.sd[0] < 0)[:, 2].mean()
    xl = np.argwhere(t.sd[1] < 0)[:, 2].mean()
    assert xr < xl  # LPS: the right lung has the smaller x


def test_measure_real_lung1_and_refuse_lung2(shared_data):
    """Test that the measurement finds lungs and branching vessels in real lung1 and never reads lung2."""
    shared_data("pyradiomics-lung/lung1_image.nrrd")
    vol = measure.load_real("lung1")
    m = measure.measure_volume(vol.hu, vol.spacing_mm, measure_mm=2.5)
    assert 2.0 < m["lung_l"] < 6.0 and m["branch_per_l"] > 10 and -900 < m["hu_p50"] < -800
    with pytest.raises(ValueError, match="validation"):
        measure.load_real("lung2")
