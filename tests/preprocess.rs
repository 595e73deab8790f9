//! The evaluation transform against torchvision (PIL input) and PIL's resampler.
//!
//! `tests/fixtures/preprocess_torchvision.safetensors` holds, per photo, the `[3, 224, 224]`
//! output of `RegNet_Y_400MF_Weights.IMAGENET1K_V1.transforms()` applied to
//! `PIL.Image.open(path).convert("RGB")`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::{Rgb, RgbImage};
use regnet_wgpu::error::Error;
use regnet_wgpu::preprocess::*;
use regnet_wgpu::tensor::{read_safetensors, Tensor};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn reference(name: &str) -> &'static Tensor {
    static REFS: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    let refs = REFS.get_or_init(|| {
        read_safetensors(root().join("tests/fixtures/preprocess_torchvision.safetensors"))
            .expect("reference fixture")
    });
    let t = &refs[name];
    assert_eq!(t.shape, vec![3, 224, 224], "{name}");
    t
}

/// `CARGO_MANIFEST_DIR/../shared/images/<file>`, or `None` (with a note) when absent.
fn shared_image(file: &str) -> Option<PathBuf> {
    let p = root().join("../shared/images").join(file);
    if p.exists() {
        Some(p)
    } else {
        common::skip(&format!(
            "preprocessing of {file}: {} not found",
            p.display()
        ));
        None
    }
}

/// Differences between two transform outputs, also counted in 8-bit input levels: every value
/// is `(k / 255 - mean) / std` for an integer `k`, so `|a - b| * std * 255` is (up to f32
/// rounding) the number of levels by which the two underlying pixels differ.
struct Diff {
    max_abs: f32,
    max_levels: f32,
    rel_l2: f64,
    frac_differing: f64,
}

fn diff(ours: &Tensor, reference: &Tensor) -> Diff {
    assert_eq!(ours.shape, reference.shape);
    let plane = ours.shape[1] * ours.shape[2];
    let (mut max_abs, mut max_levels, mut differing) = (0f32, 0f32, 0usize);
    for (i, (a, b)) in ours.data.iter().zip(&reference.data).enumerate() {
        let d = (a - b).abs();
        max_abs = max_abs.max(d);
        max_levels = max_levels.max(d * IMAGENET_STD[i / plane] * 255.0);
        differing += usize::from(a != b);
    }
    Diff {
        max_abs,
        max_levels,
        rel_l2: ours.rel_err(reference),
        frac_differing: differing as f64 / ours.len() as f64,
    }
}

fn assert_png_exact(path: &Path, name: &str) {
    let ours = EvalTransform::default().load(path).unwrap();
    let d = diff(&ours, reference(name));
    eprintln!(
        "{name}: max abs {:e}, {:.4} of values differ",
        d.max_abs, d.frac_differing
    );
    // PNG decoding is lossless and the resampler is PIL's integer arithmetic: bit-exact.
    assert!(d.max_abs <= 1e-6, "{name}: max abs diff {}", d.max_abs);
    assert_eq!(ours.data, reference(name).data, "{name} is not bit-exact");
}

#[test]
fn chelsea_bundled_png_matches_torchvision_bit_exactly() {
    assert_png_exact(&root().join("assets/chelsea.png"), "chelsea");
}

#[test]
fn shared_pngs_match_torchvision_bit_exactly() {
    for name in ["chelsea", "coffee", "astronaut"] {
        if let Some(p) = shared_image(&format!("{name}.png")) {
            assert_png_exact(&p, name);
        }
    }
}

#[test]
fn rocket_jpeg_matches_torchvision_up_to_decoder_rounding() {
    let Some(p) = shared_image("rocket.jpg") else {
        return;
    };
    let ours = EvalTransform::default().load(&p).unwrap();
    let d = diff(&ours, reference("rocket"));
    eprintln!(
        "rocket: max abs {:e} ({:.3} levels), rel L2 {:e}, {:.4} of values differ",
        d.max_abs, d.max_levels, d.rel_l2, d.frac_differing
    );
    // PIL decodes with libjpeg-turbo, the `image` crate with zune-jpeg; their IDCT/chroma
    // upsampling rounding differs. Measured on this photo: the decoded RGB8 pixels differ by
    // at most 2 levels in 0.72% of the values (1 level: 5042, 2 levels: 824 of 819840), and
    // after resize + crop + normalize the transform differs by at most 2 levels
    // (max abs 0.0342 = 2 / 255 / 0.229) in 0.69% of the values, relative L2 error 1.53e-3.
    // The resampler itself is exact (see the PNG tests), so the bounds are those 2 levels,
    // with a little room on the aggregate figures only.
    assert!(d.max_levels <= 2.0 + 1e-3, "{} levels", d.max_levels);
    assert!(
        d.max_abs <= 2.0 / 255.0 / 0.224 + 1e-6,
        "max abs {}",
        d.max_abs
    );
    assert!(d.rel_l2 <= 2e-3, "rel L2 {}", d.rel_l2);
    assert!(d.frac_differing <= 0.01, "{} differ", d.frac_differing);
}

/// An image whose pixels are a fixed function of position (also used to make the PIL data).
fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = |c: u32| ((x * 53 + y * 97 + c * 31 + x * y * 13) % 256) as u8;
        Rgb([v(0), v(1), v(2)])
    })
}

#[test]
fn resize_matches_pil_on_small_images() {
    // Expected bytes from Pillow 9.4: `Image.fromarray(pattern).resize((w, h), Image.BILINEAR)`.
    let img = pattern(7, 5);
    let cases: [(u32, u32, &[u8]); 2] = [
        (
            3,
            4,
            &[
                72, 90, 121, 137, 153, 139, 98, 107, 97, 130, 129, 122, 133, 104, 135, 165, 120,
                151, 107, 138, 99, 143, 140, 136, 153, 97, 128, 154, 102, 120, 131, 147, 163, 160,
                96, 127,
            ],
        ),
        (
            7,
            2,
            &[
                85, 116, 89, 93, 124, 155, 159, 85, 105, 109, 140, 171, 175, 148, 97, 101, 121,
                152, 156, 82, 113, 105, 136, 109, 139, 88, 119, 149, 169, 95, 125, 156, 187, 135,
                108, 139, 169, 95, 126, 156, 94, 125,
            ],
        ),
    ];
    for (w, h, expected) in cases {
        let out = resize_bilinear_pil(&img, w, h);
        assert_eq!(out.dimensions(), (w, h));
        assert_eq!(out.as_raw().as_slice(), expected, "7x5 -> {w}x{h}");
    }
    // Upsampling 7x5 -> 11x9: spot-check the first row and the last pixel.
    let up = resize_bilinear_pil(&img, 11, 9);
    assert_eq!(
        &up.as_raw()[..33],
        &[
            0, 31, 62, 24, 55, 86, 58, 89, 120, 92, 123, 154, 125, 156, 187, 159, 190, 221, 193,
            224, 92, 157, 188, 32, 27, 58, 66, 38, 69, 100, 62, 93, 124
        ]
    );
    assert_eq!(up.get_pixel(10, 8), &Rgb([250, 25, 56]));
}

#[test]
fn resize_to_same_size_is_identity_and_constants_stay_constant() {
    let img = pattern(31, 17);
    assert_eq!(resize_bilinear_pil(&img, 31, 17), img);
    let flat = RgbImage::from_pixel(45, 13, Rgb([255, 0, 77]));
    for (w, h) in [(7, 3), (90, 40), (45, 5), (3, 13), (1, 1)] {
        let out = resize_bilinear_pil(&flat, w, h);
        assert!(out.pixels().all(|p| *p == Rgb([255, 0, 77])), "{w}x{h}");
    }
}

#[test]
fn apply_equals_resize_then_center_crop() {
    let tf = EvalTransform {
        resize: 40,
        crop: (23, 30),
        ..Default::default()
    };
    for (w, h) in [(97, 61), (61, 97), (40, 40), (13, 200), (5, 3)] {
        let img = pattern(w, h);
        let (rw, rh) = tf.resized_size(w as usize, h as usize).unwrap();
        let full = center_crop(&resize_bilinear_pil(&img, rw as u32, rh as u32), 23, 30);
        let ours = tf.apply(&img).unwrap();
        assert_eq!(ours.shape, vec![3, 23, 30]);
        for c in 0..3 {
            for (x, y, p) in full.enumerate_pixels() {
                let expected = (p[c] as f32 / 255.0 - tf.mean[c]) / tf.std[c];
                assert_eq!(ours.data[(c * 23 + y as usize) * 30 + x as usize], expected);
            }
        }
    }
}

#[test]
fn resized_size_follows_torchvision() {
    let tf = EvalTransform::default();
    assert_eq!(tf.resized_size(451, 300).unwrap(), (384, 256)); // int(384.85)
    assert_eq!(tf.resized_size(640, 427).unwrap(), (383, 256)); // int(383.70)
    assert_eq!(tf.resized_size(300, 451).unwrap(), (256, 384));
    assert_eq!(tf.resized_size(512, 512).unwrap(), (256, 256));
    assert_eq!(tf.resized_size(1, 3).unwrap(), (256, 768));
    assert!(matches!(tf.resized_size(0, 3), Err(Error::Input(_))));
}

#[test]
fn crop_offsets_round_half_to_even() {
    // Python: int(round((size - crop) / 2.0)), round half to even.
    for (size, expected) in [
        (224, 0),
        (225, 0), // 0.5 -> 0
        (226, 1),
        (227, 2),  // 1.5 -> 2
        (229, 2),  // 2.5 -> 2
        (231, 4),  // 3.5 -> 4
        (383, 80), // 79.5 -> 80
        (385, 80), // 80.5 -> 80
        (384, 80),
        (100, 0),
    ] {
        assert_eq!(center_crop_offset(size, 224), expected, "size {size}");
    }
    // Through the transform: a 224-wide image needs no resize (shorter side 224), so the crop
    // of a 229-row image must start at source row 2, and of a 227-row one at row 2 too.
    let tf = EvalTransform {
        resize: 224,
        ..Default::default()
    };
    for h in [227u32, 229] {
        let img = RgbImage::from_fn(224, h, |_, y| Rgb([y as u8, 0, 0]));
        let t = tf.apply(&img).unwrap();
        let expected = (2.0f32 / 255.0 - tf.mean[0]) / tf.std[0];
        assert_eq!(t.data[0], expected, "height {h}");
    }
}

#[test]
fn small_images_are_padded_like_torchvision() {
    // torchvision pads (crop - size) // 2 before and the rest after, with black (value 0).
    let img = RgbImage::from_pixel(3, 2, Rgb([255, 255, 255]));
    let c = center_crop(&img, 5, 6);
    let white: Vec<(u32, u32)> = c
        .enumerate_pixels()
        .filter(|(_, _, p)| p[0] == 255)
        .map(|(x, y, _)| (x, y))
        .collect();
    assert_eq!(white, vec![(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]);

    // resize 100 < crop 224: the resized 100x100 image sits at offset 62 of the 224 crop.
    let tf = EvalTransform {
        resize: 100,
        ..Default::default()
    };
    let t = tf
        .apply(&RgbImage::from_pixel(50, 50, Rgb([255, 255, 255])))
        .unwrap();
    let pad = -tf.mean[0] / tf.std[0];
    let white = (1.0 - tf.mean[0]) / tf.std[0];
    assert_eq!(t.data[0], pad);
    assert_eq!(t.data[61 * 224 + 61], pad);
    assert_eq!(t.data[62 * 224 + 62], white);
    assert_eq!(t.data[161 * 224 + 161], white);
    assert_eq!(t.data[162 * 224 + 162], pad);
}

#[test]
fn tiny_and_odd_images_do_not_panic() {
    let tf = EvalTransform::default();
    for (w, h) in [
        (1, 1),
        (1, 2),
        (2, 1),
        (1, 7),
        (7, 1),
        (2, 3),
        (300, 1),
        (1, 1000),
        (223, 225),
    ] {
        let t = tf.apply(&pattern(w, h)).unwrap();
        assert_eq!(t.shape, vec![3, 224, 224], "{w}x{h}");
        assert!(t.data.iter().all(|v| v.is_finite()), "{w}x{h}");
    }
    // A 1-pixel image resizes to a constant image.
    let t = tf
        .apply(&RgbImage::from_pixel(1, 1, Rgb([10, 20, 30])))
        .unwrap();
    assert!(t.data[..224 * 224].iter().all(|&v| v == t.data[0]));

    for (w, h) in [(0, 0), (0, 5), (5, 0)] {
        assert!(resize_bilinear_pil(&pattern(3, 3), w, h).is_empty());
        assert_eq!(
            resize_bilinear_pil(&RgbImage::new(0, 0), w + 2, h + 1).dimensions(),
            (w + 2, h + 1)
        );
        assert!(matches!(
            tf.apply(&RgbImage::new(w, h)),
            Err(Error::Input(_))
        ));
    }
    let img = pattern(10, 10);
    for bad in [
        EvalTransform {
            resize: 0,
            ..Default::default()
        },
        EvalTransform {
            crop: (0, 224),
            ..Default::default()
        },
        EvalTransform {
            crop: (224, 0),
            ..Default::default()
        },
        EvalTransform {
            std: [0.2, 0.0, 0.2],
            ..Default::default()
        },
    ] {
        assert!(matches!(bad.apply(&img), Err(Error::Input(_))), "{bad:?}");
    }
    assert!(center_crop(&img, 0, 4).is_empty());
}

#[test]
fn load_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("regnet-preprocess-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.png");
    let e = load_rgb8(&missing).unwrap_err();
    assert!(e.to_string().contains("missing.png"), "{e}");

    let text = dir.join("notes.png");
    std::fs::write(&text, "not an image at all").unwrap();
    let e = EvalTransform::default().load(&text).unwrap_err();
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert!(e.to_string().contains("notes.png"), "{e}");

    let gif = dir.join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let e = load_rgb8(&gif).unwrap_err();
    assert!(
        matches!(e, Error::Image { .. }) && e.to_string().contains("anim.gif"),
        "{e}"
    );

    let truncated = dir.join("truncated.png");
    let mut bytes = Vec::new();
    pattern(20, 20)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_rgb8(&truncated).unwrap_err();
    assert!(
        matches!(e, Error::Image { .. }) && e.to_string().contains("truncated.png"),
        "{e}"
    );

    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn load_converts_like_pil() {
    // PIL's convert("RGB") drops alpha without compositing and replicates gray.
    let dir = std::env::temp_dir().join(format!("regnet-preprocess-modes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rgba = image::RgbaImage::from_fn(4, 3, |x, y| {
        image::Rgba([x as u8, y as u8, 9, (x * 60) as u8])
    });
    let gray = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 10 + y) as u8]));
    let rgb16 = image::ImageBuffer::<Rgb<u16>, _>::from_fn(4, 3, |x, y| {
        Rgb([x as u16 * 300, y as u16 * 700 + 255, 65535])
    });
    rgba.save(dir.join("rgba.png")).unwrap();
    gray.save(dir.join("gray.png")).unwrap();
    rgb16.save(dir.join("rgb16.png")).unwrap();
    let a = load_rgb8(dir.join("rgba.png")).unwrap();
    assert_eq!(a.get_pixel(3, 2), &Rgb([3, 2, 9]));
    let g = load_rgb8(dir.join("gray.png")).unwrap();
    assert_eq!(g.get_pixel(3, 2), &Rgb([32, 32, 32]));
    let c = load_rgb8(dir.join("rgb16.png")).unwrap();
    // High byte, as PIL's "RGB;16B" unpacker keeps it.
    assert_eq!(
        c.get_pixel(3, 2),
        &Rgb([(900u16 >> 8) as u8, (1655u16 >> 8) as u8, 255])
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn stack_builds_batches_and_rejects_mismatches() {
    let a = Tensor::new(vec![3, 2, 2], (0..12).map(|v| v as f32).collect()).unwrap();
    let b = Tensor::new(vec![3, 2, 2], (12..24).map(|v| v as f32).collect()).unwrap();
    let s = stack(&[a.clone(), b]).unwrap();
    assert_eq!(s.shape, vec![2, 3, 2, 2]);
    assert_eq!(s.data, (0..24).map(|v| v as f32).collect::<Vec<_>>());
    assert!(matches!(stack(&[]), Err(Error::Input(_))));
    let c = Tensor::new(vec![3, 2, 3], vec![0.0; 18]).unwrap();
    assert!(matches!(stack(&[a.clone(), c]), Err(Error::Input(_))));
    let flat = Tensor::new(vec![12], vec![0.0; 12]).unwrap();
    assert!(matches!(stack(&[flat]), Err(Error::Input(_))));
    assert_eq!(stack(&[a]).unwrap().shape, vec![1, 3, 2, 2]);
}
