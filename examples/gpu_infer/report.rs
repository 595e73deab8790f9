//! How gpu_infer prints: a result per image (text, JSON lines or CSV) on stdout, then a summary.

use regnet_wgpu::classes::class_name;
use regnet_wgpu::Tensor;
use serde::Serialize;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    JsonLines,
    Csv,
}

/// What the header and the summary say about the run.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub model: String,
    pub params: u64,
    pub macs: u64,
    pub backend: String,
    pub precision: String,
    pub weights: String,
    pub random_weights: bool,
    /// The shape the model ran on: `[batch, 3, H, W]`.
    pub input_shape: Vec<usize>,
    /// Images classified, and inputs skipped because they could not be read.
    pub images: usize,
    pub skipped: usize,
    /// Milliseconds spent in inference, all batches (`time_ms`), and in the first batch, which
    /// includes the driver's first-use compilation on some adapters.
    pub time_ms: f64,
    pub first_batch_ms: f64,
    /// CPU-thread milliseconds spent decoding and transforming images (overlapping inference).
    pub decode_ms: f64,
    pub transform_ms: f64,
    /// From the first batch's start to the last result, and images per second over it.
    pub wall_ms: f64,
    pub images_per_s: f64,
    /// Device, weights upload and pipeline compilation; process start to the first logits.
    pub setup_ms: f64,
    pub first_logits_ms: f64,
    /// `warm` (pipelines from the on-disk cache), `cold` (none yet: written for next time),
    /// `off`, or `unsupported` (this backend or device cannot cache pipelines).
    pub pipeline_cache: String,
}

/// Prints per-image results as they come and the summary at the end.
pub struct Report {
    format: Format,
    top: usize,
    csv: Option<csv::Writer<std::io::Stdout>>,
    /// The header, printed with the first line of output (so that a run that fails before
    /// its first result prints nothing on stdout).
    header: Option<Vec<String>>,
}

impl Report {
    pub fn new(format: Format, top: usize) -> Self {
        let csv = (format == Format::Csv).then(|| csv::Writer::from_writer(std::io::stdout()));
        Report {
            format,
            top,
            csv,
            header: None,
        }
    }

    /// Sets the lines before the results: what runs where (text), the CSV header.
    pub fn set_header(&mut self, s: &Summary, random_note: &str) {
        self.header = Some(match self.format {
            Format::Text => {
                let [_, _, h, w] = s.input_shape[..] else {
                    return;
                };
                vec![
                    format!(
                        "model:   {} ({:.2}M params, {:.2} GMACs per image at {h}x{w})",
                        s.model,
                        s.params as f64 / 1e6,
                        s.macs as f64 / 1e9
                    ),
                    if s.random_weights {
                        format!("weights: {random_note}")
                    } else {
                        format!("weights: {}", s.weights)
                    },
                    format!("backend: {}", s.backend),
                ]
            }
            Format::Csv => {
                let mut row = vec!["source".to_string()];
                for k in 1..=self.top {
                    row.extend([
                        format!("index_{k}"),
                        format!("class_{k}"),
                        format!("prob_{k}"),
                    ]);
                }
                row.push("error".into());
                row
            }
            Format::JsonLines => Vec::new(),
        });
    }

    /// Prints the header once, before the first line of output.
    fn flush_header(&mut self) {
        let Some(lines) = self.header.take() else {
            return;
        };
        match self.format {
            Format::Text => lines.iter().for_each(|l| println!("{l}")),
            Format::Csv => self.write_csv(&lines),
            Format::JsonLines => {}
        }
    }

    /// Row `n` of `logits` as the result for `source`.
    pub fn result(&mut self, source: &str, logits: &Tensor, n: usize) {
        let classes = logits.shape[1];
        let row = Tensor {
            shape: vec![1, classes],
            data: logits.data[n * classes..(n + 1) * classes].to_vec(),
        };
        let top = row.softmax_rows().top_k(0, self.top.min(classes));
        self.flush_header();
        match self.format {
            Format::Text => {
                println!("{source}:");
                let width = top.len().to_string().len().max(2);
                for (rank, (i, p)) in top.iter().enumerate() {
                    println!(
                        "  {:>width$}. {:>6.2}%  {} ({i})",
                        rank + 1,
                        p * 100.0,
                        class_name(classes, *i)
                    );
                }
            }
            Format::JsonLines => {
                let top: Vec<_> = top
                    .iter()
                    .map(|&(i, p)| {
                        serde_json::json!({"index": i, "class": class_name(classes, i),
                            "prob": p, "logit": row.data[i]})
                    })
                    .collect();
                println!("{}", serde_json::json!({"source": source, "top": top}));
            }
            Format::Csv => {
                let mut cells = vec![source.to_string()];
                for &(i, p) in &top {
                    cells.extend([i.to_string(), class_name(classes, i), format!("{p:.6}")]);
                }
                cells.resize(1 + 3 * self.top, String::new());
                cells.push(String::new());
                self.write_csv(&cells);
            }
        }
    }

    /// An input that could not be read: on stderr always, and as a line of its own in the
    /// JSON and CSV outputs, so that every input has one.
    pub fn skipped(&mut self, source: &str, why: &str) {
        if self.format != Format::Text {
            self.flush_header();
        }
        match self.format {
            Format::Text => {}
            Format::JsonLines => {
                println!("{}", serde_json::json!({"source": source, "error": why}));
            }
            Format::Csv => {
                let mut cells = vec![source.to_string()];
                cells.resize(1 + 3 * self.top, String::new());
                cells.push(why.to_string());
                self.write_csv(&cells);
            }
        }
    }

    /// The summary: text lines, or the JSON line `{"summary": ...}`; for CSV it goes to stderr.
    pub fn summary(&mut self, s: &Summary) {
        self.flush_header();
        if let Some(w) = self.csv.as_mut() {
            let _ = w.flush();
        }
        let text = summary_text(s);
        match self.format {
            Format::Text => println!("{text}"),
            Format::JsonLines => println!("{}", serde_json::json!({ "summary": s })),
            Format::Csv => eprintln!("{text}"),
        }
    }

    fn write_csv(&mut self, cells: &[String]) {
        if let Some(w) = self.csv.as_mut() {
            let _ = w.write_record(cells);
        }
    }
}

fn secs(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1e3)
    } else {
        format!("{ms:.1} ms")
    }
}

/// The summary as text: counts, where the time went, the cold start.
fn summary_text(s: &Summary) -> String {
    let mut lines = vec![format!(
        "input:   {:?} per run; {} image{} classified{}",
        s.input_shape,
        s.images,
        if s.images == 1 { "" } else { "s" },
        if s.skipped > 0 {
            format!(", {} skipped (could not be read: see stderr)", s.skipped)
        } else {
            String::new()
        }
    )];
    let gpu = s.backend.starts_with("gpu");
    lines.push(format!(
        "time:    {} for inference ({:.1} images/s over {} wall); the first run took {}{} \
         (steady-state timings: the `bench` example)",
        secs(s.time_ms),
        s.images_per_s,
        secs(s.wall_ms),
        secs(s.first_batch_ms),
        if gpu {
            ", which includes the driver's first-use work"
        } else {
            ""
        }
    ));
    lines.push(format!(
        "         decoding {} and resizing {} of CPU-thread time, alongside inference",
        secs(s.decode_ms),
        secs(s.transform_ms)
    ));
    let what = if gpu {
        format!(
            "device, weights, kernels; pipeline cache: {}",
            s.pipeline_cache
        )
    } else {
        "the backend's weights".to_string()
    };
    lines.push(format!(
        "startup: {} to set up ({what}); first logits {} after the program started",
        secs(s.setup_ms),
        secs(s.first_logits_ms)
    ));
    lines.join("\n")
}
