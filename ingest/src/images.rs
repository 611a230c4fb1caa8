//! Decoding PNG/JPEG stimuli into channel-first float pixels, resizing them
//! when (and only when) the request says how, and the small PNG thumbnails
//! dashboards show.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use serde::Deserialize;

use crate::error::{IngestError, Result};
use crate::limits::Limits;

/// Longest side of a stored thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    Nearest,
    #[default]
    Bilinear,
    Bicubic,
    Lanczos,
}

impl ResizeFilter {
    fn filter(self) -> FilterType {
        match self {
            ResizeFilter::Nearest => FilterType::Nearest,
            ResizeFilter::Bilinear => FilterType::Triangle,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
            ResizeFilter::Lanczos => FilterType::Lanczos3,
        }
    }
}

/// `WxH`, e.g. `224x224`.
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || {
        IngestError::invalid(format!(
            "resize: expected WIDTHxHEIGHT (e.g. 224x224), got {s:?}"
        ))
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if w == 0 || h == 0 {
        return Err(bad());
    }
    Ok((w, h))
}

fn cannot_decode(field: &str, e: &dyn std::fmt::Display) -> IngestError {
    IngestError::invalid(format!("{field}: cannot decode the image ({e})"))
}

/// A reader for the bytes, refusing anything but PNG and JPEG.
fn png_or_jpeg<'a>(bytes: &'a [u8], field: &str) -> Result<ImageReader<Cursor<&'a [u8]>>> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| cannot_decode(field, &e))?;
    if !matches!(
        reader.format(),
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    ) {
        return Err(IngestError::invalid(format!(
            "{field}: not a PNG or JPEG file"
        )));
    }
    Ok(reader)
}

/// Decodes one image; checks its dimensions from the header first.
pub fn decode(bytes: &[u8], field: &str, limits: &Limits) -> Result<DynamicImage> {
    let fail = |e: &dyn std::fmt::Display| cannot_decode(field, e);
    let (w, h) = png_or_jpeg(bytes, field)?
        .into_dimensions()
        .map_err(|e| fail(&e))?;
    limits.check(&format!("{field}: width"), w as u64, limits.max_image_side)?;
    limits.check(&format!("{field}: height"), h as u64, limits.max_image_side)?;
    let mut reader = png_or_jpeg(bytes, field)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_image_side as u32);
    l.max_image_height = Some(limits.max_image_side as u32);
    reader.limits(l);
    reader.decode().map_err(|e| fail(&e))
}

/// Width, height and whether the image is grayscale, from its header alone.
pub fn probe(bytes: &[u8], field: &str, limits: &Limits) -> Result<(u32, u32, bool)> {
    use image::ImageDecoder;
    let dec = png_or_jpeg(bytes, field)?
        .into_decoder()
        .map_err(|e| cannot_decode(field, &e))?;
    let (w, h) = dec.dimensions();
    limits.check(&format!("{field}: width"), w as u64, limits.max_image_side)?;
    limits.check(&format!("{field}: height"), h as u64, limits.max_image_side)?;
    Ok((w, h, !dec.color_type().has_color()))
}

/// Resizes to exactly (w, h) with the given filter.
pub fn resize(img: DynamicImage, (w, h): (u32, u32), filter: ResizeFilter) -> DynamicImage {
    if img.width() == w && img.height() == h {
        return img;
    }
    img.resize_exact(w, h, filter.filter())
}

/// Appends the image as channels × height × width floats in [0, 1].
pub fn push_chw(img: &DynamicImage, channels: usize, out: &mut Vec<f32>) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if channels == 1 {
        let g = img.to_luma8();
        out.extend(g.as_raw().iter().map(|&v| v as f32 / 255.0));
    } else {
        let rgb = img.to_rgb8();
        let raw = rgb.as_raw();
        for c in 0..3 {
            out.extend((0..w * h).map(|p| raw[p * 3 + c] as f32 / 255.0));
        }
    }
}

/// A PNG of one channel-first image whose values span [lo, hi], fitted
/// inside THUMBNAIL_SIDE × THUMBNAIL_SIDE.
pub fn thumbnail(chw: &[f32], c: usize, h: usize, w: usize, lo: f64, hi: f64) -> Result<Vec<u8>> {
    let span = if hi > lo { hi - lo } else { 1.0 };
    let to8 = |v: f32| (((v as f64 - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
    let img = if c >= 3 {
        let mut raw = vec![0u8; h * w * 3];
        for p in 0..h * w {
            for k in 0..3 {
                raw[p * 3 + k] = to8(chw[k * h * w + p]);
            }
        }
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(w as u32, h as u32, raw).expect("sized"))
    } else {
        let raw: Vec<u8> = chw[..h * w].iter().map(|&v| to8(v)).collect();
        DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w as u32, h as u32, raw).expect("sized"),
        )
    };
    let small = if w as u32 > THUMBNAIL_SIDE || h as u32 > THUMBNAIL_SIDE {
        img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    } else {
        img
    };
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| IngestError::invalid(format!("thumbnail: {e}")))?;
    Ok(png)
}
