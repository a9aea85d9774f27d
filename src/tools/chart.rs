//! What every chart needs before it draws text: a registered font.

/// No font could be registered.
#[derive(Debug, thiserror::Error)]
#[error("no usable DejaVu Sans font (Debian: apt-get install fonts-dejavu-core)")]
pub struct NoFont;

/// Registers DejaVu Sans as plotters' `sans-serif`, once per process.
pub fn register_font() -> Result<(), NoFont> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        let Some(font) = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
        ]
        .iter()
        .find_map(|p| std::fs::read(p).ok()) else {
            return false;
        };
        // The font registry wants 'static bytes; this runs once per process.
        let font: &'static [u8] = Box::leak(font.into_boxed_slice());
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, font)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(NoFont)
    }
}
